"""Packing tokenized samples: what a sequence costs in a bin, checking bins, reporting efficiency.

Sizes are counted in *model positions*, as the reference does (it histograms ``len - 1``): a
sequence of ``L`` token ids is trained as ``tokens = ids[:-1]``, ``labels = ids[1:]``, so it fills
``L - 1`` positions of a packed row. A bin therefore holds sequences whose ``len - 1`` sum to at
most ``pack_size``, and the collate pads every packed row to exactly ``pack_size`` positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sft_data.errors import SftError
from sft_data.types import TokenizedSample


def positions(samples: Sequence[TokenizedSample]) -> np.ndarray:
    """The number of model positions each sample fills in a packed row (``len(input_ids) - 1``)."""
    return np.fromiter((len(s.input_ids) - 1 for s in samples), dtype=np.int64, count=len(samples))


def check_bins(bins: Sequence[Sequence[int]], lengths: Sequence[int], pack_size: int, algorithm: str = "") -> None:
    """Refuse bins that lose or repeat a sequence or overflow ``pack_size``.

    Run on every algorithm's output, since a plugin's algorithm is not ours to trust.
    """
    who = f"packing algorithm {algorithm!r}" if algorithm else "packing"
    lengths = np.asarray(lengths, dtype=np.int64)
    n = len(lengths)
    flat = np.fromiter((i for b in bins for i in b), dtype=np.int64)
    if any(len(b) == 0 for b in bins):
        raise SftError(f"{who} produced an empty bin")
    if len(flat) and (flat.min() < 0 or flat.max() >= n):
        raise SftError(f"{who} produced an index outside 0..{n - 1}")
    counts = np.bincount(flat, minlength=n)
    if len(flat) != n or (counts != 1).any():
        missing = int((counts == 0).sum())
        repeated = int((counts > 1).sum())
        raise SftError(
            f"{who} must place every sequence in exactly one bin: {missing} missing, {repeated} repeated"
        )
    sizes = bin_sizes(bins, lengths)
    if len(sizes) and sizes.max() > pack_size:
        worst = int(sizes.argmax())
        raise SftError(f"{who} overfilled bin {worst}: {int(sizes[worst])} > pack size {pack_size}")


def bin_sizes(bins: Sequence[Sequence[int]], lengths: Sequence[int] | np.ndarray) -> np.ndarray:
    """Total length per bin."""
    lengths = np.asarray(lengths, dtype=np.int64)
    per_bin = np.fromiter((len(b) for b in bins), dtype=np.int64, count=len(bins))
    flat = np.fromiter((i for b in bins for i in b), dtype=np.int64, count=int(per_bin.sum()))
    owner = np.repeat(np.arange(len(bins)), per_bin)
    return np.bincount(owner, weights=lengths[flat], minlength=len(bins)).astype(np.int64)


def packing_stats(bins: Sequence[Sequence[int]], lengths: Sequence[int], pack_size: int) -> dict[str, Any]:
    """Bins, efficiency (real positions / capacity) and sequences per bin, for stats.json."""
    per_bin = np.fromiter((len(b) for b in bins), dtype=np.int64, count=len(bins))
    capacity = len(bins) * pack_size
    used = int(np.asarray(lengths, dtype=np.int64).sum())
    return {
        "pack_size": pack_size,
        "bins": len(bins),
        "efficiency": used / capacity if capacity else 0.0,
        "sequences_per_bin": {
            "mean": float(per_bin.mean()) if len(bins) else 0.0,
            "min": int(per_bin.min()) if len(bins) else 0,
            "max": int(per_bin.max()) if len(bins) else 0,
        },
    }


def pack_samples(
    samples: Sequence[TokenizedSample], pack_size: int, algorithm: Any, seed: int = 0
) -> tuple[list[list[int]], dict[str, Any]]:
    """Pack samples by their model positions with a registered algorithm; returns bins and stats.

    ``algorithm`` is a registry entry's value (anything with ``name`` and ``pack``). Samples
    longer than ``pack_size + 1`` ids must have been truncated or dropped by the caller.
    """
    lengths = positions(samples)
    if len(lengths) and lengths.min() < 1:
        index = int(lengths.argmin())
        raise SftError(f"sample {samples[index].source or index} has fewer than 2 tokens: nothing to train on")
    return pack_lengths(lengths + 1, pack_size, algorithm, seed)


def pack_lengths(
    lengths: np.ndarray, pack_size: int, algorithm: Any, seed: int = 0
) -> tuple[list[list[int]], dict[str, Any]]:
    """``pack_samples`` for samples given by their lengths in token ids (what ``prepare`` keeps)."""
    positions = np.asarray(lengths, dtype=np.int64) - 1
    if len(positions) and positions.min() < 1:
        raise SftError(f"sample {int(positions.argmin())} has fewer than 2 tokens: nothing to train on")
    bins = [list(map(int, b)) for b in algorithm.pack(positions, pack_size, seed)]
    check_bins(bins, positions, pack_size, getattr(algorithm, "name", ""))
    stats = {"algorithm": getattr(algorithm, "name", str(algorithm)), "seed": seed}
    return bins, {**stats, **packing_stats(bins, positions, pack_size)}
