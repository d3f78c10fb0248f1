"""Tokenizers: the contract, the SentencePiece and Hugging Face implementations, and loading by path."""

from sft_data.tokenizers.base import Tokenizer, TokenizerLoader
from sft_data.tokenizers.loading import load_tokenizer

__all__ = ["Tokenizer", "TokenizerLoader", "load_tokenizer"]
