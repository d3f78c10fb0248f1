"""Rendered template text -> segments: which characters are trained, which strings are control tokens.

Two things must be told apart in a rendered chat: control-token strings the *template* wrote
(``<|im_start|>``, the BOS) and the same strings typed inside a message (which must stay text, or
a user could inject turns). Before rendering, every special-token string inside a message (its
content, tool calls, reasoning) or a tool schema is replaced by a one-character placeholder from
Unicode's private-use plane; after rendering, any special-token string still present was written by
the template, and placeholders are turned back into their text as plain, non-special pieces. The
same private-use characters serve as sentinels (``markers``) around ``{% generation %}`` bodies,
reasoning and tool results. Characters already used by the conversation are never chosen.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise

from sft_data.tokenizers.base import Tokenizer
from sft_data.types import Segment

_PRIVATE_USE = range(0xF0000, 0xFFFFE)  # Supplementary Private Use Area-A: never real text in SFT data
_PRIVATE_USE_RE = re.compile("[\U000F0000-\U000FFFFD]")
# Control-token looking strings in a template's source (<|im_start|>, <s>, <start_of_turn>, [INST]...).
_CANDIDATE = re.compile(r"<[^<>\s{}%'\"]{1,64}>|\[/?[A-Z_]{2,32}\]")


def special_strings(tokenizer: Tokenizer, source: str) -> list[str]:
    """Strings that are single control tokens of ``tokenizer``, longest first: bos/eos, plus

    * the tokenizer's declared ``special_tokens`` when it has that list (HF: added tokens flagged
      special; an ordinary vocabulary entry such as ``<b>`` must stay ordinary text), or else
    * control-token looking literals of the template source that the vocabulary holds as one
      token (SentencePiece, whose ``token_to_id`` only answers for control/user-defined pieces).
    """
    declared = getattr(tokenizer, "special_tokens", None)
    found = set(declared) if declared is not None else set(_CANDIDATE.findall(source))
    found.update(t for t in (tokenizer.bos_token, tokenizer.eos_token) if t)
    # Whitespace "specials" would make placeholders change what `content|trim` sees; never needed.
    return sorted((s for s in found if s.strip() and tokenizer.token_to_id(s) is not None), key=lambda s: (-len(s), s))


def free_characters(texts: Iterable[str], count: int) -> list[str]:
    """``count`` private-use characters that occur in none of ``texts``."""
    used = {c for text in texts for c in _PRIVATE_USE_RE.findall(text)}
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
        object.__setattr__(self, "_to_text", {ord(p): s for p, s in zip(self.placeholders, self.specials, strict=True)})

    def occurs_in(self, text: str) -> bool:
        """Whether any special-token string occurs in ``text``."""
        return self._find is not None and self._find.search(text) is not None

    def protect(self, content: str) -> str:
        if self._find is None:
            return content
        return self._find.sub(lambda m: self._to_placeholder[m.group(0)], content)

    def restore(self, text: str) -> str:
        return text.translate(self._to_text) if self._to_text else text

    def template_specials(self, text: str) -> list[tuple[int, int]]:
        """``(start, end)`` of every special-token string in protected text: all written by the template."""
        return [m.span() for m in self._find.finditer(text)] if self._find is not None else []


def to_segments(text: str, trained: Sequence[tuple[int, int]], protector: Protector,
                regions: Sequence[tuple[int, int, str]] = ()) -> list[Segment]:
    """Cut protected ``text`` at control tokens, trained-span edges and region edges.

    A control token is never cut: it is trained when it overlaps a trained span (as transformers
    masks every token that overlaps a generation span), and of the kind of a region it overlaps.
    Placeholders become their original text inside plain segments.
    """
    controls = protector.template_specials(text)
    control_starts = {start: end for start, end in controls}
    cuts = {0, len(text)}
    cuts.update(x for span in trained for x in span)
    cuts.update(x for start, end, _ in regions for x in (start, end))
    for start, end in controls:  # nothing cuts inside a control token
        cuts.difference_update(range(start + 1, end))
        cuts.update((start, end))
    segments: list[Segment] = []
    for start, end in pairwise(sorted(cuts)):
        special = control_starts.get(start) == end
        is_trained = any(s < end and start < e for s, e in trained)
        kind = next((k for s, e, k in regions if s < end and start < e), None)
        body = text[start:end] if special else protector.restore(text[start:end])
        segments.append(Segment(body, trained=is_trained, special=special,
                                role="assistant" if is_trained else None, kind=kind))
    return segments
