"""Built-in tokenizer loaders, registered like a plugin's."""

from __future__ import annotations

from sft_core import hookimpl

from sft_data.tokenizers.huggingface import HuggingFaceLoader
from sft_data.tokenizers.sentencepiece import SentencePieceLoader


@hookimpl
def sft_register_tokenizers(register):
    register(SentencePieceLoader())
    register(HuggingFaceLoader())
