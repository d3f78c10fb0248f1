"""Fixtures for sft-data tests: a character-level tokenizer whose ids can be checked by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

SPECIALS = {
    "<extra_id_0>": 1, "<extra_id_1>": 2, "<extra_id_2>": 3, "<s>": 4, "</s>": 5,
    "<|im_start|>": 6, "<|im_end|>": 7,
}
CHAR_OFFSET = 100


class CharTokenizer:
    """One token per character (id = 100 + code point); control strings are single ids 1..7."""

    kind = "char"
    vocab_size = CHAR_OFFSET + 0x3000
    bos_id, eos_id, pad_id = 4, 5, None
    bos_token, eos_token = "<s>", "</s>"
    chat_template = None

    def encode(self, text):
        return [CHAR_OFFSET + ord(c) for c in text]

    def decode(self, ids):
        inverse = {v: k for k, v in SPECIALS.items()}
        return "".join(inverse.get(i, chr(i - CHAR_OFFSET) if i >= CHAR_OFFSET else "") for i in ids)

    def token_to_id(self, token):
        return SPECIALS.get(token)

    def id_to_piece(self, token_id):
        return self.decode([token_id])

    def files(self):
        return []

    def fingerprint(self):
        return "char"


@pytest.fixture
def char_tokenizer() -> CharTokenizer:
    return CharTokenizer()


def expand(pieces: list[tuple[str, bool]], specials=SPECIALS) -> tuple[list[int], list[bool]]:
    """Expected (ids, loss_mask) for hand-written pieces: control strings are one token."""
    ids, mask = [], []
    tok = CharTokenizer()
    for text, trained in pieces:
        piece = [specials[text]] if text in specials else tok.encode(text)
        ids += piece
        mask += [trained] * len(piece)
    mask[0] = False
    return ids, mask


@pytest.fixture
def expand_pieces():
    return expand


REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def sp_tokenizer_path(tmp_path_factory) -> Path:
    """A small SentencePiece model trained on the repository's example corpus (a few seconds)."""
    from sft_data.tokenizers.training import train_sentencepiece

    out = tmp_path_factory.mktemp("tok") / "tok.model"
    return train_sentencepiece([REPO / "examples" / "data" / "corpus.txt"], out, vocab_size=600)
