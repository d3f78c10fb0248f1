"""Deterministic, resumable global-batch sampling for data-parallel training.

Batch math (as the reference): ``global_batch_size = micro_batch_size x num_microbatches x dp_size``.
An *item* is one dataset index: a bin for packed data, a sample otherwise.

- Each epoch visits a permutation of ``range(dataset_size)`` drawn from
  ``np.random.default_rng(seed + epoch)`` (identity order with ``shuffle=False``).
- The permutation is cut into ``dataset_size // global_batch_size`` global batches; the
  incomplete tail is dropped (it could not be split evenly over the ranks). Those items are not
  lost for good: the next epoch's permutation places them elsewhere.
- Global batch ``g`` of an epoch is ``perm[g*G : (g+1)*G]``; rank ``r`` of ``dp_size`` gets the
  contiguous slice ``[r*G/dp : (r+1)*G/dp]`` of it, which the trainer cuts into
  ``num_microbatches`` micro-batches of ``micro_batch_size``.

State is ``{"epoch", "consumed_samples"}``: ``consumed_samples`` counts global items handed out
since training began (all epochs, as the trainer logs it); ``epoch`` is implied by it and kept for
readability and as a check. Restoring it resumes at exactly the next global batch, so a resumed run
sees the batches an uninterrupted one would have.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from sft_data.errors import SftError


class GlobalBatchSampler:
    """Yields this rank's indices of each global batch, one epoch per ``iter()``.

    Use it as a DataLoader's ``batch_sampler`` (each yielded list becomes one collated batch) or
    iterate it and cut micro-batches yourself. The state advances when a batch is *handed out*; a
    DataLoader with worker prefetching draws ahead of training, so a trainer saving a checkpoint
    should store ``state_for(its own consumed_samples)`` rather than this sampler's live state.
    """

    def __init__(
        self,
        dataset_size: int,
        global_batch_size: int,
        *,
        seed: int = 0,
        dp_rank: int = 0,
        dp_size: int = 1,
        shuffle: bool = True,
    ):
        if global_batch_size < 1 or dp_size < 1:
            raise SftError("global batch size and data-parallel size must be positive")
        if global_batch_size % dp_size:
            raise SftError(
                f"global batch size {global_batch_size} is not divisible by the data-parallel size {dp_size}"
            )
        if not 0 <= dp_rank < dp_size:
            raise SftError(f"data-parallel rank {dp_rank} is outside 0..{dp_size - 1}")
        if dataset_size < global_batch_size:
            raise SftError(
                f"the dataset has {dataset_size} items, fewer than one global batch ({global_batch_size})"
            )
        self.dataset_size = dataset_size
        self.global_batch_size = global_batch_size
        self.seed = seed
        self.dp_rank = dp_rank
        self.dp_size = dp_size
        self.shuffle = shuffle
        self.consumed_samples = 0

    @property
    def batches_per_epoch(self) -> int:
        return self.dataset_size // self.global_batch_size

    @property
    def samples_per_epoch(self) -> int:
        """Items consumed per epoch (the dropped tail excluded)."""
        return self.batches_per_epoch * self.global_batch_size

    @property
    def epoch(self) -> int:
        return self.consumed_samples // self.samples_per_epoch

    def permutation(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.dataset_size)
        return np.random.default_rng(self.seed + epoch).permutation(self.dataset_size)

    def global_batch(self, epoch: int, index: int) -> np.ndarray:
        """All ranks' items of global batch ``index`` of ``epoch``, in rank order."""
        size = self.global_batch_size
        return self.permutation(epoch)[index * size : (index + 1) * size]

    def rank_slice(self, batch: np.ndarray) -> list[int]:
        """This rank's contiguous share of a global batch."""
        share = self.global_batch_size // self.dp_size
        return batch[self.dp_rank * share : (self.dp_rank + 1) * share].tolist()

    def __len__(self) -> int:
        """Global batches left in the current epoch (what the next ``iter()`` yields)."""
        return self.batches_per_epoch - (self.consumed_samples % self.samples_per_epoch) // self.global_batch_size

    def __iter__(self) -> Iterator[list[int]]:
        epoch = self.epoch
        perm = self.permutation(epoch)
        size = self.global_batch_size
        while self.epoch == epoch:
            start = self.consumed_samples - epoch * self.samples_per_epoch
            # advance before yielding: once the caller holds the batch it counts as consumed
            self.consumed_samples += size
            yield self.rank_slice(perm[start : start + size])

    def state_dict(self) -> dict[str, int]:
        return self.state_for(self.consumed_samples)

    def state_for(self, consumed_samples: int) -> dict[str, int]:
        """The state after ``consumed_samples`` global items (e.g. the trainer's own count)."""
        return {"epoch": consumed_samples // self.samples_per_epoch, "consumed_samples": consumed_samples}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume after a saved state; refuses one that does not fit this sampler's batch size."""
        try:
            consumed = int(state["consumed_samples"])
            epoch = int(state["epoch"])
        except (KeyError, TypeError, ValueError):
            raise SftError(f"sampler state must have integer epoch and consumed_samples, got {state!r}") from None
        if consumed < 0 or consumed % self.global_batch_size:
            raise SftError(
                f"consumed_samples {consumed} is not a whole number of global batches of {self.global_batch_size}"
            )
        if epoch != consumed // self.samples_per_epoch:
            raise SftError(
                f"sampler state says epoch {epoch} but {consumed} consumed samples is epoch "
                f"{consumed // self.samples_per_epoch} with {self.samples_per_epoch} samples per epoch; "
                "was the dataset or the global batch size changed?"
            )
        self.consumed_samples = consumed
