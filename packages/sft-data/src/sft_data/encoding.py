"""Rendered segments -> token ids and loss mask, piece by piece.

Each segment is tokenized on its own and the ids concatenated, so a trained span starts and ends
exactly where the template says, whatever the tokenizer would merge across the junction (the
reference tokenized whole conversations and then placed masks by per-turn lengths, which drifts).
Adjacent plain-text segments with the same mask are joined first so ordinary text tokenizes
naturally.
"""

from __future__ import annotations

from collections.abc import Iterable

from sft_data.errors import SftError
from sft_data.tokenizers.base import Tokenizer
from sft_data.types import Segment, TokenizedSample


def merge_segments(segments: Iterable[Segment]) -> list[Segment]:
    merged: list[Segment] = []
    for seg in segments:
        if not seg.text:
            continue
        last = merged[-1] if merged else None
        if last and not seg.special and not last.special and last.trained == seg.trained and last.role == seg.role:
            merged[-1] = Segment(last.text + seg.text, seg.trained, False, seg.role)
        else:
            merged.append(seg)
    return merged


class SegmentEncoder:
    """Encodes segments with one tokenizer, caching how each control string encodes."""

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self._special: dict[str, list[int]] = {}

    def encode_special(self, text: str) -> list[int]:
        """A template's control string: one token when the vocabulary has it, else its text.

        A control string that tokenizes to nothing (a SentencePiece model without byte fallback
        drops ``\\x11``) would silently remove turn boundaries, so it is an error.
        """
        cached = self._special.get(text)
        if cached is not None:
            return cached
        single = self.tokenizer.token_to_id(text)
        ids = [single] if single is not None else self.tokenizer.encode(text)
        if single is None and (not ids or (text.strip() and text.strip() not in self.tokenizer.decode(ids))):
            raise SftError(
                f"the template token {text!r} does not survive tokenization by this tokenizer "
                f"(it encodes to {ids}); pick chat prompt tokens the tokenizer can represent"
            )
        self._special[text] = ids
        return ids

    def encode(self, segments: Iterable[Segment], source: str = "") -> TokenizedSample:
        ids: list[int] = []
        mask: list[bool] = []
        spans: list[tuple[int, int, bool]] = []
        for seg in merge_segments(segments):
            piece = self.encode_special(seg.text) if seg.special else self.tokenizer.encode(seg.text)
            start = len(ids)
            ids.extend(piece)
            mask.extend([seg.trained] * len(piece))
            spans.append((start, len(ids), seg.trained))
        if mask:
            mask[0] = False  # nothing predicts the first token
        return TokenizedSample(ids, mask, source=source, segments=spans)
