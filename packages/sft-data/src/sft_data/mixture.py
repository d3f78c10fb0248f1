"""Weighted mixing of several prepared datasets (the reference's ``concat_sampling_probabilities``).

The reference blends datasets through an index that sends each position to the dataset furthest
below its share so far; it sizes the blend from ``max_steps`` and has no epoch. Here a mixture has
epochs, so ``max_epochs``, the epoch counter and resume work as for one dataset:

- **An epoch** has ``N = sum of the sources' sizes`` items (an item is a sample, or a packed bin
  of one source's samples). Source ``i`` gets ``c_i`` of them: ``p_i * N`` rounded by largest
  remainder, so every ``c_i`` is ``floor`` or ``ceil`` of ``p_i * N`` and they sum to ``N`` exactly.
- **Which samples**: each source is read as an endless stream of its own permutations, one per
  pass (``seed``, source, pass); epoch ``e`` takes stream positions ``[e*c_i, (e+1)*c_i)``. So at
  every epoch boundary each sample of a source has been drawn ``floor`` or ``ceil`` of
  (draws / size) times: an upsampled source repeats all its samples alike, a downsampled one
  visits other samples in each epoch until all have been seen (within one epoch a sample can
  repeat only where the stream starts a new pass).
- **Order**: the sources are interleaved evenly (item ``k`` of source ``i`` at the fractional
  position ``(k + 1/2) / c_i``, as the reference's blending index spreads them), then, with
  ``shuffle``, the whole epoch is permuted with the epoch's seed, a new draw each epoch.

Everything is a function of (seed, epoch, sizes, weights), so the sampler state stays
``(epoch, consumed_samples)`` and a resumed run sees exactly the batches an uninterrupted one does.
Flat item indices are ``offset of the source + index within it`` (``MixedBins`` reads them).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from sft_data.dataset import Bin, BinDataset
from sft_data.errors import SftError
from sft_data.sampler import GlobalBatchSampler
from sft_data.store import PreparedDataset

TOLERANCE = 1e-6
"""How far from 1 the probabilities may sum (decimal fractions such as 0.7 + 0.2 + 0.1 do not add to 1.0)."""


def check_weights(weights: Sequence[float], sources: int) -> list[float]:
    """``weights`` as floats: one per source, each in [0, 1], summing to 1."""
    values = [float(w) for w in weights]
    if len(values) != sources:
        raise SftError(f"{len(values)} sampling probabilities for {sources} datasets: give one per dataset")
    if not all(math.isfinite(w) and 0.0 <= w <= 1.0 for w in values):
        raise SftError(f"sampling probabilities must be within [0, 1], got {values}")
    if abs(math.fsum(values) - 1.0) > TOLERANCE:
        raise SftError(f"sampling probabilities must sum to 1, got {values} (sum {math.fsum(values):g})")
    return values


def epoch_counts(weights: Sequence[float], total: int) -> np.ndarray:
    """Items per source in one epoch of ``total``: ``weights * total`` by largest remainder."""
    exact = np.asarray(weights, dtype=np.float64) * total
    counts = np.floor(exact).astype(np.int64)
    short = total - int(counts.sum())
    # the largest remainders get one more; ties go to the earlier source (a stable sort)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[:short]] += 1
    return counts


def interleave(counts: Sequence[int]) -> np.ndarray:
    """Source of each position when ``counts[i]`` items of source ``i`` are spread evenly."""
    sources = np.repeat(np.arange(len(counts)), counts)
    ranks = np.concatenate([np.arange(c) for c in counts]) if len(counts) else np.zeros(0, dtype=np.int64)
    where = (ranks + 0.5) / np.repeat(np.maximum(counts, 1), counts)
    return sources[np.lexsort((sources, where))]


class MixtureSampler(GlobalBatchSampler):
    """``GlobalBatchSampler`` over the flat items of a mixture; only the epoch's order differs."""

    def __init__(self, sizes: Sequence[int], weights: Sequence[float], global_batch_size: int, *, seed: int = 0,
                 dp_rank: int = 0, dp_size: int = 1, shuffle: bool = True):
        if not sizes or min(sizes) < 1:
            raise SftError(f"every dataset of a mixture needs at least one item, got sizes {list(sizes)}")
        self.sizes = [int(s) for s in sizes]
        self.weights = check_weights(weights, len(self.sizes))
        super().__init__(sum(self.sizes), global_batch_size, seed=seed, dp_rank=dp_rank, dp_size=dp_size,
                         shuffle=shuffle)
        self.counts = epoch_counts(self.weights, self.dataset_size)
        self.offsets = np.cumsum([0, *self.sizes])[:-1]
        self._cached: tuple[int, np.ndarray] | None = None

    def _stream(self, source: int, start: int, count: int) -> np.ndarray:
        """Positions ``[start, start + count)`` of source ``source``'s stream of permutations."""
        size = self.sizes[source]
        out = []
        position = start
        while position < start + count:
            passes, offset = divmod(position, size)
            order = (np.random.default_rng((self.seed, source + 1, passes)).permutation(size) if self.shuffle
                     else np.arange(size))
            take = order[offset : offset + start + count - position]
            out.append(take)
            position += len(take)
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def permutation(self, epoch: int) -> np.ndarray:
        """The epoch's flat items, in order (computed once per epoch: every batch of it reads it)."""
        if self._cached is not None and self._cached[0] == epoch:
            return self._cached[1]
        sources = interleave(self.counts)
        items = np.empty(self.dataset_size, dtype=np.int64)
        for i, count in enumerate(self.counts):
            items[sources == i] = self.offsets[i] + self._stream(i, epoch * int(count), int(count))
        if self.shuffle:
            items = items[np.random.default_rng(self.seed + epoch).permutation(self.dataset_size)]
        self._cached = (epoch, items)
        return items

    def source_of(self, items: np.ndarray) -> np.ndarray:
        """Which source each flat item index belongs to."""
        return np.searchsorted(self.offsets, items, side="right") - 1

    def state_for(self, consumed_samples: int) -> dict[str, Any]:
        return {**super().state_for(consumed_samples), "sizes": list(self.sizes), "weights": list(self.weights)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """As ``GlobalBatchSampler``'s, and refuses a state saved for another mixture."""
        if "sizes" in state and (list(state["sizes"]) != self.sizes or list(state["weights"]) != self.weights):
            raise SftError(f"the sampler state was saved for datasets of sizes {state['sizes']} mixed with "
                           f"{state['weights']}, not {self.sizes} with {self.weights}")
        super().load_state_dict(state)


class MixedBins:
    """Map-style dataset over several prepared datasets, read through flat item indices."""

    def __init__(self, sources: Sequence[PreparedDataset | str | os.PathLike]):
        self.sources = [BinDataset(s) for s in sources]
        pack_sizes = {s.pack_size for s in self.sources}
        if len(pack_sizes) > 1:
            raise SftError(f"the datasets of a mixture must all be packed alike, got pack sizes "
                           f"{sorted(pack_sizes, key=str)}")
        self.pack_size = pack_sizes.pop()
        self.sizes = [len(s) for s in self.sources]
        self.offsets = np.cumsum([0, *self.sizes])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index: int) -> Bin:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(index)
        source = int(np.searchsorted(self.offsets, index, side="right") - 1)
        return self.sources[source][index - int(self.offsets[source])]
