"""Encoding texts in which some character spans are control tokens, with each token's character offsets.

A chat template writes control strings (``<extra_id_1>``, ``<|im_end|>``) that must become single
control ids, while the same characters typed inside a message stay text. Tokenizers that cannot be
told "this occurrence is a control token and that one is not" in a single call get their text cut at
the template's control spans: every run of plain text between two of them is encoded on its own (all
the runs of many texts in one batch call), and the control ids are put in between.

That is also exactly how the reference encodes NeMo chat with SentencePiece: NeMo's legacy
SentencePiece wrapper cuts the whole conversation at its special tokens, encodes the runs apart and,
for a run that lies *between two* special tokens, drops a leading bare ``▁`` piece (the dummy prefix
SentencePiece puts in front of every run it encodes). ``trim_id`` turns that rule on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

Offsets = np.ndarray
"""``(n, 2)`` int64 array: ``[start, end)`` character offsets of each token in its text."""
Encoded = tuple[list[int], Offsets]
BatchEncode = Callable[[list[str]], list[tuple[Sequence[int], Sequence[tuple[int, int]]]]]

_NO_OFFSETS = np.zeros((0, 2), dtype=np.int64)


def as_offsets(pairs: Sequence[tuple[int, int]], shift: int = 0) -> Offsets:
    if not len(pairs):
        return _NO_OFFSETS
    array = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    return array + shift if shift else array


def encode_between_controls(
    texts: Sequence[str],
    controls: Sequence[Sequence[tuple[int, int]]],
    open_ends: Sequence[bool],
    control_id: Callable[[str], int],
    encode_batch: BatchEncode,
    trim_id: int | None = None,
) -> list[Encoded]:
    """Each text cut at its ``controls`` (sorted, disjoint spans): runs of plain text encoded by one
    ``encode_batch`` call (ids and offsets within the run), control spans as ``control_id(string)``.

    With ``trim_id``, a run that follows a control and is followed by one (or, with ``open_end``,
    by the answer a generation prompt is waiting for) loses a leading ``trim_id`` token.
    """
    runs: list[str] = []
    # Per text: ("run", run index, start, trimmed) or ("control", id, start, end) in text order.
    layouts: list[list[tuple]] = []
    for text, spans, open_end in zip(texts, controls, open_ends, strict=True):
        layout: list[tuple] = []
        pos = 0
        for k, (start, end) in enumerate(spans):
            if start > pos:
                layout.append(("run", len(runs), pos, k > 0))
                runs.append(text[pos:start])
            layout.append(("control", control_id(text[start:end]), start, end))
            pos = end
        if pos < len(text):
            layout.append(("run", len(runs), pos, open_end and bool(spans)))
            runs.append(text[pos:])
        layouts.append(layout)
    encoded = encode_batch(runs) if runs else []
    out: list[Encoded] = []
    for layout in layouts:
        ids: list[int] = []
        offsets: list[Offsets] = []
        for entry in layout:
            if entry[0] == "control":
                ids.append(entry[1])
                offsets.append(np.array([[entry[2], entry[3]]], dtype=np.int64))
                continue
            run_ids, run_offsets = encoded[entry[1]]
            skip = int(trim_id is not None and entry[3] and len(run_ids) > 0 and run_ids[0] == trim_id)
            ids.extend(run_ids[skip:])
            offsets.append(as_offsets(run_offsets, entry[2])[skip:])
        out.append((ids, np.concatenate(offsets) if offsets else _NO_OFFSETS))
    return out
