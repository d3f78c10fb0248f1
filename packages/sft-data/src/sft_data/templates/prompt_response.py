"""Prompt-response samples: NeMo GPTSFTDataset's template splitting, truncation and masks.

The template is split into literal pieces and ``{field}`` pieces, each tokenized on its own;
sample = ``[bos] + context + [sep] + answer + [eos]`` where the answer is the label field (the
last piece). Over-long samples lose ``overflow / n`` tokens from each truncation field first, then
whole pieces from the right (or left), which can eat the answer: a sample left with nothing
trained is dropped by the caller, never fed to the loss.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sft_data.config import DataConfig
from sft_data.errors import SftError
from sft_data.text import unescape
from sft_data.tokenizers.base import Tokenizer
from sft_data.types import PromptResponse, TokenizedSample

_SPLIT = re.compile(r"( *?{[^{}]+?})")
TEMPLATE_KEY = "<template>"


@dataclass(frozen=True)
class PromptTemplate:
    """A parsed prompt template: its pieces and which field each placeholder names."""

    pieces: tuple[str, ...]
    keys: tuple[str, ...]
    """Per piece: the field name for a placeholder, ``<template>`` for literal text."""
    label_key: str

    @classmethod
    def parse(cls, template: str, label_key: str, space_sensitive: bool) -> PromptTemplate:
        template = unescape(template)
        if not template.endswith(f"{{{label_key}}}"):
            raise SftError(f"prompt_template must end with the label placeholder {{{label_key}}}: {template!r}")
        raw = [s for s in _SPLIT.split(template) if s]
        pieces, keys = [], []
        for piece in raw:
            # Tokenizers that are not space sensitive (SentencePiece) add the space themselves.
            if not space_sensitive and piece.startswith(" "):
                piece = piece[1:]
            stripped = piece.lstrip(" ")
            if stripped.startswith("{") and stripped.endswith("}"):
                keys.append(stripped[1:-1])
                pieces.append(piece)
            else:
                keys.append(TEMPLATE_KEY)
                pieces.append(piece)
        return cls(tuple(pieces), tuple(keys), label_key)

    def fill(self, sample: PromptResponse) -> list[str]:
        out = []
        for piece, key in zip(self.pieces, self.keys, strict=True):
            if key == TEMPLATE_KEY:
                out.append(piece)
            else:
                spaces = piece[: len(piece) - len(piece.lstrip(" "))]
                out.append(spaces + sample.fields[key])
        return out


def _cut(ids: list[int], keep: int, method: str) -> list[int]:
    if keep <= 0:
        return []
    return ids[-keep:] if method == "left" else ids[:keep]


def truncate_pieces(piece_ids: list[list[int]], keys: tuple[str, ...], extra: int, config: DataConfig) -> bool:
    """Shorten ``piece_ids`` in place so they plus ``extra`` tokens fit; True if anything was cut."""
    total = sum(len(ids) for ids in piece_ids) + extra
    overflow = total - config.max_seq_length
    if overflow <= 0:
        return False
    fields = config.truncation_fields
    if fields:
        shares = [overflow // len(fields) + (1 if i < overflow % len(fields) else 0) for i in range(len(fields))]
        share_iter = iter(shares)
        for i, key in enumerate(keys):
            if key in fields:
                cut = min(next(share_iter, 0), len(piece_ids[i]))
                overflow -= cut
                piece_ids[i] = _cut(piece_ids[i], len(piece_ids[i]) - cut, config.truncation_method)
    if overflow > 0:
        order = range(len(piece_ids)) if config.truncation_method == "left" else range(len(piece_ids) - 1, -1, -1)
        for i in order:
            cut = min(overflow, len(piece_ids[i]))
            piece_ids[i] = _cut(piece_ids[i], len(piece_ids[i]) - cut, config.truncation_method)
            overflow -= cut
            if overflow == 0:
                break
    return True


class PromptResponseTokenizer:
    """Turns ``PromptResponse`` records into ``TokenizedSample``s for one config and tokenizer."""

    def __init__(self, config: DataConfig, tokenizer: Tokenizer):
        self.config = config
        self.tokenizer = tokenizer
        space_sensitive = tokenizer.kind != "sentencepiece"
        self.template = PromptTemplate.parse(config.prompt_template, config.label_key, space_sensitive)
        if config.add_bos and tokenizer.bos_id is None:
            raise SftError("add_bos is set but the tokenizer has no BOS token")
        if config.add_eos and tokenizer.eos_id is None:
            raise SftError("add_eos is set but the tokenizer has no EOS token")

    def __call__(self, sample: PromptResponse, source: str = "") -> TokenizedSample:
        cfg = self.config
        piece_ids = [self.tokenizer.encode(text) for text in self.template.fill(sample)]
        extra = int(cfg.add_bos) + int(cfg.add_sep) + int(cfg.add_eos)
        truncated = truncate_pieces(piece_ids, self.template.keys, extra, cfg)
        context = [i for ids in piece_ids[:-1] for i in ids]
        answer = list(piece_ids[-1])
        if cfg.add_bos:
            context = [self.tokenizer.bos_id, *context]
        if cfg.add_sep:
            context = [*context, cfg.sep_id]
        ids = context + answer + ([self.tokenizer.eos_id] if cfg.add_eos else [])
        start = len(context) if cfg.answer_only_loss else 1
        mask = [j >= max(start, 1) for j in range(len(ids))]
        return TokenizedSample(ids, mask, truncated=truncated, source=source)
