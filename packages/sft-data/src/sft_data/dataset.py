"""Training batches from a prepared dataset: items are bins, the collate builds packed rows.

Row layout. Each sequence of ``L`` ids is trained the reference's way, on its own shift:
``tokens = ids[:-1]``, ``labels = ids[1:]``, label mask ``loss_mask[1:]``, position ids
``0 .. L-2``. A row is its bin's sequences back to back, so it fills ``sum(L - 1)`` positions, then
padding (``pad_id``, label mask False) up to a fixed length: the pack size for packed data, or the
batch's longest row rounded up to a multiple of 16 for unpacked data.

Boundaries for attention that never crosses a sequence (THD ``PackedSeqParams`` or a
block-diagonal causal mask) come as ``cu_seqlens`` per row: ``[0, end_1, ..., end_n]`` plus the
row length when the row has padding (the padding is a pseudo-sequence of its own, as in the
reference, so the boundaries always cover the whole row), filled with -1 to a common width;
``cu_seqlens_argmin`` is the number of valid entries and ``max_seqlen`` the longest segment.

torch is imported only by ``Collator.__call__``: ``BinDataset`` is a plain map-style dataset
(``__len__``/``__getitem__``), which ``torch.utils.data.DataLoader`` accepts as it is, and
``collate_arrays`` gives the same batch as numpy arrays without torch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sft_data.errors import SftError
from sft_data.store import PreparedDataset

Bin = list[tuple[np.ndarray, np.ndarray]]


class BinDataset:
    """Map-style dataset over a prepared dataset: item ``i`` is bin ``i`` as ``[(ids, loss_mask), ...]``.

    Unpacked data has one sequence per bin, so the same class serves both.
    """

    def __init__(self, prepared: PreparedDataset | str | os.PathLike):
        self.prepared = prepared if isinstance(prepared, PreparedDataset) else PreparedDataset(prepared)

    def __len__(self) -> int:
        return self.prepared.num_bins

    def __getitem__(self, index: int) -> Bin:
        return self.prepared.bin(int(index))

    @property
    def pack_size(self) -> int | None:
        return self.prepared.pack_size


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def collate_arrays(
    bins: Sequence[Bin], *, pack_size: int | None = None, pad_id: int = 0, multiple_of: int = 16
) -> dict[str, np.ndarray]:
    """Build one batch (numpy) from bins; see the module docstring for the layout.

    Returns ``tokens``, ``labels``, ``position_ids`` (int64 ``[b, T]``), ``loss_mask`` (bool
    ``[b, T]``, label positions), ``cu_seqlens`` (int32 ``[b, K]``, -1 filled),
    ``cu_seqlens_argmin``, ``max_seqlen`` and ``row_tokens`` (int32 ``[b]``: each row's real
    positions, which come first; the rest is padding).
    """
    if not bins:
        raise SftError("cannot collate an empty batch")
    seqlens = [[len(ids) - 1 for ids, _ in b] for b in bins]
    used = [sum(s) for s in seqlens]
    if pack_size is not None:
        length = pack_size
        if max(used) > pack_size:
            raise SftError(f"a bin fills {max(used)} positions, more than the pack size {pack_size}")
    else:
        length = max(_round_up(max(used), multiple_of), multiple_of)
    rows = len(bins)
    tokens = np.full((rows, length), pad_id, dtype=np.int64)
    labels = np.full((rows, length), pad_id, dtype=np.int64)
    loss_mask = np.zeros((rows, length), dtype=np.bool_)
    position_ids = np.zeros((rows, length), dtype=np.int64)
    bounds: list[list[int]] = []
    for row, (b, lens) in enumerate(zip(bins, seqlens, strict=True)):
        if b:
            tokens[row, : used[row]] = np.concatenate([ids[:-1] for ids, _ in b])
            labels[row, : used[row]] = np.concatenate([ids[1:] for ids, _ in b])
            loss_mask[row, : used[row]] = np.concatenate([mask[1:] for _, mask in b])
        ends = np.cumsum([0, *lens])
        if used[row] < length:  # padding: a pseudo-sequence with its own positions, never trained
            ends = np.append(ends, length)
        # positions restart at every boundary: index minus the start of the segment it lies in
        starts = np.repeat(ends[:-1], np.diff(ends))
        position_ids[row] = np.arange(length) - starts
        bounds.append(ends.tolist())
    width = max(len(e) for e in bounds)
    cu_seqlens = np.full((rows, width), -1, dtype=np.int32)
    for row, ends in enumerate(bounds):
        cu_seqlens[row, : len(ends)] = ends
    return {
        "tokens": tokens,
        "labels": labels,
        "loss_mask": loss_mask,
        "position_ids": position_ids,
        "cu_seqlens": cu_seqlens,
        "cu_seqlens_argmin": np.array([len(e) for e in bounds], dtype=np.int32),
        "max_seqlen": np.array([int(np.diff(e).max()) for e in bounds], dtype=np.int32),
        "row_tokens": np.array(used, dtype=np.int32),
    }


def block_causal_mask(cu_seqlens: np.ndarray) -> np.ndarray:
    """The ``[T, T]`` boolean mask (True = may attend) for one row's valid ``cu_seqlens``.

    For attention backends without THD support: causal inside each sequence, nothing across.
    """
    ends = np.asarray(cu_seqlens)
    ends = ends[ends >= 0]
    segment = np.repeat(np.arange(len(ends) - 1), np.diff(ends))
    same = segment[:, None] == segment[None, :]
    return same & np.tril(np.ones((len(segment), len(segment)), dtype=np.bool_))


@dataclass
class Collator:
    """``collate_fn`` for a DataLoader over ``BinDataset``: ``collate_arrays`` as torch tensors.

    ``loss_mask`` comes out as float32 so the loss can be ``(per_token_loss * loss_mask).sum()``;
    divide by the trained-token count of the whole global batch, not per micro-batch.
    """

    pack_size: int | None = None
    pad_id: int = 0
    multiple_of: int = 16

    def __call__(self, bins: Sequence[Bin]) -> dict[str, Any]:
        import torch  # only training needs torch; preparing data does not

        arrays = collate_arrays(bins, pack_size=self.pack_size, pad_id=self.pad_id, multiple_of=self.multiple_of)
        batch = {key: torch.from_numpy(value) for key, value in arrays.items()}
        batch["loss_mask"] = batch["loss_mask"].float()
        return batch
