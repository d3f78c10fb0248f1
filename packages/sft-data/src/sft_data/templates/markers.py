"""Sentinel characters put around parts of a conversation before rendering, found again after.

A template may move, repeat, trim or drop what it is given, so where a message's reasoning or a
tool's result ends up in the rendered text is not computed from the input: the part is wrapped in
two private-use characters (chosen so that they occur nowhere in the conversation,
``jinja_text.free_characters``), and the rendered text is searched for them. The same is done with
``{% generation %}`` blocks. Sentinels go inside the part's surrounding whitespace, so a template
that strips it (``| trim``, ``.strip('\\n')``) renders the same text as without them.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Callable

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
_THINK = re.compile(f"({re.escape(THINK_OPEN)})(.*?)({re.escape(THINK_CLOSE)})", re.DOTALL)
EMPTY_THINK = re.compile(rf"{re.escape(THINK_OPEN)}\s*{re.escape(THINK_CLOSE)}\s*")
"""An empty reasoning block, as hybrid templates (Qwen3) insert before an answer given without one."""

Pair = tuple[str, str]
Span = tuple[int, int]


def wrap(text: str, pair: Pair) -> str:
    """``text`` with the sentinels around its non-blank core (unchanged when it is blank)."""
    core = text.strip()
    if not core:
        return text
    lead = len(text) - len(text.lstrip())
    return f"{text[:lead]}{pair[0]}{core}{pair[1]}{text[lead + len(core):]}"


def wrap_think(content: str, pair: Pair) -> str:
    """``content`` with the sentinels around the reasoning of each ``<think>…</think>`` block in it,
    and around the text before a ``</think>`` that no ``<think>`` opens (as DeepSeek-R1 writes it)."""
    if THINK_CLOSE not in content:
        return content
    head, _, tail = content.partition(THINK_CLOSE)
    if THINK_OPEN not in head:
        return wrap(head, pair) + THINK_CLOSE + _THINK.sub(lambda m: m.group(1) + wrap(m.group(2), pair) + m.group(3), tail)
    return _THINK.sub(lambda m: m.group(1) + wrap(m.group(2), pair) + m.group(3), content)


def split_think(content: str) -> tuple[str, str, str]:
    """``(before, reasoning, answer)`` of a content with reasoning in it (its last ``</think>``)."""
    head, _, answer = content.rpartition(THINK_CLOSE)
    before, found, reasoning = head.rpartition(THINK_OPEN)
    return (before, reasoning, answer) if found else ("", head, answer)


def strip_markers(text: str, pairs: dict[str, Pair]) -> tuple[str, dict[str, list[Span]], Callable[[int], int]]:
    """``text`` without sentinels; per pair name, the (outermost, non-empty) spans they enclosed in
    that clean text; and the map from a position in ``text`` to the same place in the clean text."""
    roles = {pair[0]: (name, 1) for name, pair in pairs.items()}
    roles.update({pair[1]: (name, -1) for name, pair in pairs.items()})
    spans: dict[str, list[Span]] = {name: [] for name in pairs}
    if not any(c in text for c in roles):
        return text, spans, lambda pos: pos
    depth = dict.fromkeys(pairs, 0)
    start = dict.fromkeys(pairs, 0)
    positions: list[int] = []
    pieces: list[str] = []
    last = 0
    for match in re.finditer("[" + "".join(map(re.escape, roles)) + "]", text):
        at = match.start()
        pieces.append(text[last:at])
        clean = at - len(positions)
        positions.append(at)
        last = at + 1
        name, step = roles[match.group()]
        if step > 0:
            if depth[name] == 0:
                start[name] = clean
            depth[name] += 1
        elif depth[name] > 0:
            depth[name] -= 1
            if depth[name] == 0 and clean > start[name]:
                spans[name].append((start[name], clean))
    pieces.append(text[last:])
    return "".join(pieces), spans, lambda pos: pos - bisect_left(positions, pos)


def think_block(text: str, span: Span) -> Span:
    """``span`` (reasoning) widened to the ``<think>`` tag before it and the ``</think>`` tag after it
    (and the blank after that) where they are, only blanks in between."""
    start, end = span
    before = len(text[:start].rstrip())
    if text.endswith(THINK_OPEN, 0, before):
        start = before - len(THINK_OPEN)
    after = end + len(text[end:]) - len(text[end:].lstrip())
    if text.startswith(THINK_CLOSE, after):
        close = after + len(THINK_CLOSE)
        end = close + len(text[close:]) - len(text[close:].lstrip())
    return start, end


def subtract(spans: list[Span] | tuple[Span, ...], cuts: list[Span]) -> list[Span]:
    """Sorted disjoint ``spans`` minus every character of ``cuts``."""
    if not cuts:
        return list(spans)
    out: list[Span] = []
    cuts = sorted(cuts)
    for start, end in spans:
        for cut_start, cut_end in cuts:
            if cut_end <= start or cut_start >= end:
                continue
            if cut_start > start:
                out.append((start, cut_start))
            start = max(start, cut_end)
            if start >= end:
                break
        if start < end:
            out.append((start, end))
    return out
