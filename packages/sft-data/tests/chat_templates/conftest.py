"""Tokenizers for the chat-template tests, built in-process (no downloads).

``char_tok``: one id per character (100 + code point) and one id per control string, so expected
ids and masks can be written by hand. ``make_hf_tokenizer``: a tiny byte-level BPE trained on a few
lines, saved as tokenizer.json + tokenizer_config.json like a Hub tokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

CONTROL = [
    "<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>",
    "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
]
CHAR_OFFSET = 100
CORPUS = [
    "Hello! How can I help you today?",
    "You are a helpful assistant. Be nice and brief.",
    "What is two plus two? Two plus two is four.",
    "user assistant system tool: the quick brown fox jumps over the lazy dog.",
    "Sure, here it is. Thanks a lot! More please.",
]


class CharTok:
    """One token per character; every CONTROL string is one id (1 + its index)."""

    kind = "char"
    vocab_size = CHAR_OFFSET + 0x3000
    pad_id = None
    chat_template = None

    def __init__(self, bos: str = "<s>", eos: str = "</s>"):
        self.special_tokens = tuple(CONTROL)
        self.bos_token, self.eos_token = bos, eos
        self.bos_id, self.eos_id = self.token_to_id(bos), self.token_to_id(eos)

    def encode(self, text):
        return [CHAR_OFFSET + ord(c) for c in text]

    def decode(self, ids):
        return "".join(CONTROL[i - 1] if i < CHAR_OFFSET else chr(i - CHAR_OFFSET) for i in ids)

    def token_to_id(self, token):
        return CONTROL.index(token) + 1 if token in CONTROL else None

    def id_to_piece(self, token_id):
        return self.decode([token_id])

    def files(self):
        return []

    def fingerprint(self):
        return "char"


def expected(pieces: list[tuple[str, bool]]) -> tuple[list[int], list[bool]]:
    """(ids, loss_mask) for hand-written pieces: CONTROL strings one id, text one id per character."""
    tok = CharTok()
    ids: list[int] = []
    mask: list[bool] = []
    for text, trained in pieces:
        piece = [tok.token_to_id(text)] if text in CONTROL else tok.encode(text)
        ids += piece
        mask += [trained] * len(piece)
    mask[0] = False  # nothing predicts the first token (types.py)
    return ids, mask


@pytest.fixture
def char_tok() -> CharTok:
    return CharTok()


@pytest.fixture
def llama_char_tok() -> CharTok:
    return CharTok(bos="<|begin_of_text|>", eos="<|eot_id|>")


@pytest.fixture
def expect():
    return expected


def build_hf_tokenizer(directory: Path, *, config: dict | None = None, template_file: str | None = None,
                       specials: list[str] = CONTROL, metaspace: bool = False) -> Path:
    """Train a BPE on CORPUS with ``specials`` as special tokens; write it to ``directory``.

    Byte-level (GPT-2 / Llama 3 / Qwen style) by default; ``metaspace``: Llama 2 / Mistral style,
    a ``▁`` prepended to the first piece of the text only (``prepend_scheme="first"``).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    if metaspace:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first")
        tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="first")
        alphabet = []
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=alphabet, show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    directory.mkdir(parents=True, exist_ok=True)
    tok.save(str(directory / "tokenizer.json"))
    if config is not None:
        (directory / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    if template_file is not None:
        (directory / "chat_template.jinja").write_text(template_file, encoding="utf-8")
    return directory


@pytest.fixture
def make_hf_tokenizer(tmp_path):
    """Factory: ``make_hf_tokenizer(name, config=..., template_file=...)`` -> the tokenizer directory."""

    def make(name: str = "tok", **kwargs) -> Path:
        return build_hf_tokenizer(tmp_path / name, **kwargs)

    return make
