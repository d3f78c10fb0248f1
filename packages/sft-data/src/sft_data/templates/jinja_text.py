"""Rendered template text -> segments: which characters are trained, which strings are control tokens.

Two things must be told apart in a rendered chat: control-token strings the *template* wrote
(``<|im_start|>``, the BOS) and the same strings typed inside a message (which must stay text, or
a user could inject turns). Before rendering, every special-token string inside a message's content
is replaced by a one-character placeholder from Unicode's private-use plane; after rendering, any
special-token string still present was written by the template, and placeholders are turned back
into their text as plain, non-special pieces. The same private-use characters serve as sentinels
around ``{% generation %}`` bodies. Characters already used by the conversation are never chosen.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sft_data.tokenizers.base import Tokenizer
from sft_data.types import Segment

_PRIVATE_USE = range(0xF0000, 0xFFFFE)  # Supplementary Private Use Area-A: never real text in SFT data
# Control-token looking strings in a template's source (<|im_start|>, <s>, <start_of_turn>, [INST]...).
_CANDIDATE = re.compile(r"<[^<>\s{}%'\"]{1,64}>|\[/?[A-Z_]{2,32}\]")


def special_strings(tokenizer: Tokenizer, source: str) -> list[str]:
    """Strings that are single control tokens of ``tokenizer``, longest first.

    The tokenizer's declared special tokens (HF: added tokens flagged special) and bos/eos, plus
    control-token looking literals of the template source that the vocabulary holds as one token
    (SentencePiece control/user-defined pieces, which such tokenizers do not list).
    """
    found = set(getattr(tokenizer, "special_tokens", None) or ())
    found.update(t for t in (tokenizer.bos_token, tokenizer.eos_token) if t)
    found.update(_CANDIDATE.findall(source))
    # Whitespace "specials" would make placeholders change what `content|trim` sees; never needed.
    return sorted((s for s in found if s.strip() and tokenizer.token_to_id(s) is not None), key=lambda s: (-len(s), s))


def free_characters(texts: Iterable[str], count: int) -> list[str]:
    """``count`` private-use characters that occur in none of ``texts``."""
    used = {c for text in texts for c in text if ord(c) >= _PRIVATE_USE.start}
    chars: list[str] = []
    for code in _PRIVATE_USE:
        if len(chars) == count:
            break
        if chr(code) not in used:
            chars.append(chr(code))
    return chars


@dataclass(frozen=True)
class Protector:
    """Replaces special-token strings in message contents with placeholders, and back."""

    specials: Sequence[str]
    placeholders: Sequence[str]

    def __post_init__(self) -> None:
        pattern = "|".join(re.escape(s) for s in self.specials)
        object.__setattr__(self, "_find", re.compile(pattern) if pattern else None)
        object.__setattr__(self, "_to_placeholder", dict(zip(self.specials, self.placeholders, strict=True)))
        object.__setattr__(self, "_to_text", dict(zip(self.placeholders, self.specials, strict=True)))

    def protect(self, content: str) -> str:
        if self._find is None:
            return content
        return self._find.sub(lambda m: self._to_placeholder[m.group(0)], content)

    def restore(self, text: str) -> str:
        return "".join(self._to_text.get(c, c) for c in text) if self._to_text else text

    def template_specials(self, text: str) -> list[tuple[int, int]]:
        """``(start, end)`` of every special-token string in protected text: all written by the template."""
        return [m.span() for m in self._find.finditer(text)] if self._find is not None else []


def extract_marked(text: str, open_marker: str, close_marker: str) -> tuple[str, list[tuple[int, int]]]:
    """Remove generation sentinels; return the clean text and the spans they enclosed (outermost)."""
    out: list[str] = []
    spans: list[tuple[int, int]] = []
    depth, start, length = 0, 0, 0
    for piece in re.split(f"({re.escape(open_marker)}|{re.escape(close_marker)})", text):
        if piece == open_marker:
            if depth == 0:
                start = length
            depth += 1
        elif piece == close_marker:
            depth -= 1
            if depth == 0 and length > start:
                spans.append((start, length))
        else:
            out.append(piece)
            length += len(piece)
    return "".join(out), spans


def to_segments(text: str, trained: Sequence[tuple[int, int]], protector: Protector) -> list[Segment]:
    """Cut protected ``text`` at control tokens and trained-span edges.

    A control token overlapping a trained span is trained (as transformers masks every token that
    overlaps a generation span). Placeholders become their original text inside plain segments.
    """
    flags = bytearray(len(text))
    for start, end in trained:
        flags[start:end] = b"\x01" * (end - start)
    segments: list[Segment] = []

    def plain(start: int, end: int) -> None:
        run = start
        for i in range(start + 1, end + 1):
            if i == end or flags[i] != flags[run]:
                is_trained = bool(flags[run])
                segments.append(Segment(protector.restore(text[run:i]), trained=is_trained,
                                        role="assistant" if is_trained else None))
                run = i

    pos = 0
    for start, end in protector.template_specials(text):
        if start > pos:
            plain(pos, start)
        is_trained = any(flags[start:end])
        segments.append(Segment(text[start:end], trained=is_trained, special=True,
                                role="assistant" if is_trained else None))
        pos = end
    if pos < len(text):
        plain(pos, len(text))
    return segments
