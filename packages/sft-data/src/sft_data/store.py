"""The prepared-dataset directory: flat arrays, no pickles, memory-mapped on read.

Layout (every array a plain ``.npy`` file, loaded with ``allow_pickle=False``)::

    header.json       format, format_version, counts, pack_size, plus what the caller passes
                      (tokenizer fingerprint, template/format, packing algorithm and seed, ...)
    tokens.npy        int32  [total tokens]       every stored sequence's ids, back to back
    loss_mask.npy     uint8  [total tokens]       0/1 per token, same convention as TokenizedSample
    seq_offsets.npy   int64  [sequences + 1]      sequence k is tokens[seq_offsets[k]:seq_offsets[k+1]]
    bin_offsets.npy   int64  [bins + 1]           bin b is sequences bin_offsets[b]..bin_offsets[b+1]-1
    sample_index.npy  int64  [sequences]          the original sample position of stored sequence k

Sequences are stored bin by bin, so a bin is a run of consecutive sequences; ``sample_index``
recovers the original order. Unpacked data is the same with one sequence per bin.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from sft_data.errors import SftError
from sft_data.packing.plan import check_bins
from sft_data.types import TokenizedSample

FORMAT = "sft-prepared"
FORMAT_VERSION = 1
HEADER = "header.json"
ARRAYS = {  # file stem -> dtype
    "tokens": np.int32,
    "loss_mask": np.uint8,
    "seq_offsets": np.int64,
    "bin_offsets": np.int64,
    "sample_index": np.int64,
}
RESERVED = ("format", "format_version", "pack_size", "counts")
COPY_BLOCK = 1 << 22
"""Tokens copied per step when sequences are put in bin order (bounds the gather index's memory)."""


def write_prepared(
    directory: str | os.PathLike,
    samples: Sequence[TokenizedSample],
    *,
    bins: list[list[int]] | None,
    pack_size: int | None,
    header: dict[str, Any],
) -> None:
    """Write ``samples`` (grouped into ``bins`` of sample indices, or one per bin) to ``directory``.

    Files go to a temporary sibling first and are renamed into place, so an interrupted write
    leaves either the old dataset or the new one. An existing directory is replaced only if it is
    empty or a prepared dataset; anything else is refused rather than deleted.
    """
    lengths = np.fromiter((len(s.input_ids) for s in samples), dtype=np.int64, count=len(samples))
    if len(lengths) and lengths.min() < 2:
        index = int(lengths.argmin())
        raise SftError(f"sample {samples[index].source or index} has fewer than 2 tokens: nothing to train on")
    total = int(lengths.sum())
    tokens = token_array(chain.from_iterable(s.input_ids for s in samples), total)
    mask = np.fromiter(chain.from_iterable(s.loss_mask for s in samples), dtype=np.uint8, count=total)
    write_prepared_arrays(directory, tokens, mask, lengths, bins=bins, pack_size=pack_size, header=header)


def token_array(ids, count: int = -1) -> np.ndarray:
    """Token ids as int32, refusing what int32 cannot hold."""
    try:
        array = np.fromiter(ids, dtype=np.int64, count=count)
    except OverflowError:
        raise SftError("token ids must fit in int32") from None
    if len(array) and (array.min() < 0):
        raise SftError("token ids must not be negative")
    if len(array) and array.max() > np.iinfo(np.int32).max:
        raise SftError("token ids must fit in int32")
    return array.astype(np.int32)


def write_prepared_arrays(
    directory: str | os.PathLike,
    tokens: np.ndarray,
    mask: np.ndarray,
    lengths: np.ndarray,
    *,
    bins: list[list[int]] | None,
    pack_size: int | None,
    header: dict[str, Any],
) -> None:
    """``write_prepared`` for samples given as flat arrays in sample order: ``tokens`` (int32) and
    ``mask`` (0/1 uint8) back to back, ``lengths`` per sample. They may be memory-mapped files larger
    than memory: sequences are copied into bin order a block at a time."""
    clash = [key for key in RESERVED if key in header]
    if clash:
        raise ValueError(f"header keys {clash} are written by the store itself")
    lengths = np.asarray(lengths, dtype=np.int64)
    count = len(lengths)
    if count and lengths.min() < 2:
        raise SftError(f"sample {int(lengths.argmin())} has fewer than 2 tokens: nothing to train on")
    if bins is None:
        bins = [[i] for i in range(count)]
    else:
        if pack_size is None:
            raise SftError("packed data needs its pack size")
        check_bins(bins, lengths - 1, pack_size)  # a sequence of L ids fills L - 1 positions
    target = Path(directory)
    _check_target(target)

    order = np.fromiter(chain.from_iterable(bins), dtype=np.int64, count=count)
    seq_offsets = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(lengths[order], out=seq_offsets[1:])
    total = int(seq_offsets[-1])
    bin_offsets = np.zeros(len(bins) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in bins], out=bin_offsets[1:])

    def write(tmp: Path) -> None:
        trained = _copy_in_order(tmp, tokens, mask, lengths, order, seq_offsets)
        for stem, array in (("seq_offsets", seq_offsets), ("bin_offsets", bin_offsets), ("sample_index", order)):
            np.save(tmp / f"{stem}.npy", array.astype(ARRAYS[stem], copy=False), allow_pickle=False)
        full_header = {
            **header,
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "pack_size": pack_size,
            "counts": {"sequences": count, "bins": len(bins), "tokens": total, "trained_tokens": trained},
        }
        # the header is written last: a directory with a header is a complete dataset
        (tmp / HEADER).write_text(json.dumps(full_header, indent=2, sort_keys=True) + "\n")

    _write_atomically(target, write)


def _copy_in_order(tmp: Path, tokens: np.ndarray, mask: np.ndarray, lengths: np.ndarray, order: np.ndarray,
                   seq_offsets: np.ndarray) -> int:
    """Write tokens.npy and loss_mask.npy with the sequences in ``order``; returns the trained count."""
    total = int(seq_offsets[-1])
    out_tokens = np.lib.format.open_memmap(tmp / "tokens.npy", mode="w+", dtype=ARRAYS["tokens"], shape=(total,))
    out_mask = np.lib.format.open_memmap(tmp / "loss_mask.npy", mode="w+", dtype=ARRAYS["loss_mask"], shape=(total,))
    starts = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    trained = 0
    i = 0
    while i < len(order):
        j = max(i + 1, int(np.searchsorted(seq_offsets, seq_offsets[i] + COPY_BLOCK, side="right")) - 1)
        block = order[i:j]
        lo, hi = int(seq_offsets[i]), int(seq_offsets[j])
        if len(block) == 1 or bool((np.diff(block) == 1).all()):  # consecutive samples: one slice
            source = slice(int(starts[block[0]]), int(starts[block[-1] + 1]))
        else:
            block_lengths = lengths[block]
            shift = starts[block] - (seq_offsets[i:j] - lo)
            source = np.repeat(shift, block_lengths) + np.arange(hi - lo, dtype=np.int64)
        out_tokens[lo:hi] = tokens[source]
        out_mask[lo:hi] = mask[source]
        trained += int(np.count_nonzero(out_mask[lo:hi]))
        i = j
    out_tokens.flush()
    out_mask.flush()
    del out_tokens, out_mask
    return trained


def is_prepared_dataset(path: Path) -> bool:
    """Whether ``path`` is a directory holding a prepared dataset's header."""
    try:
        return json.loads((path / HEADER).read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _check_target(target: Path) -> None:
    if target.exists() and not target.is_dir():
        raise SftError(f"{target} exists and is not a directory; refusing to overwrite it")
    if target.is_dir() and any(target.iterdir()) and not is_prepared_dataset(target):
        raise SftError(f"{target} exists and is not a prepared dataset; refusing to overwrite it")


def _write_atomically(target: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` fills a temporary sibling directory, which then replaces ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        write(tmp)
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / "d")
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


class PreparedDataset:
    """A prepared dataset opened read-only; arrays are memory-mapped, nothing is copied up front."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.header = self._read_header()
        arrays = {stem: self._load(stem, dtype) for stem, dtype in ARRAYS.items()}
        self.tokens = arrays["tokens"]
        self.loss_mask = arrays["loss_mask"].view(np.bool_)
        self.seq_offsets = arrays["seq_offsets"]
        self.bin_offsets = arrays["bin_offsets"]
        self.sample_index = arrays["sample_index"]
        self._check_consistent()

    def __reduce__(self):
        # DataLoader workers started by spawn receive the dataset pickled: reopen the files there
        # instead of copying every memory-mapped array into the pickle
        return (PreparedDataset, (str(self.directory),))

    def _read_header(self) -> dict[str, Any]:
        path = self.directory / HEADER
        if not path.is_file():
            raise SftError(f"{self.directory} is not a prepared dataset: {HEADER} is missing")
        try:
            header = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise SftError(f"{path}: unreadable header ({exc})") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise SftError(f"{path}: not an sft prepared-dataset header")
        version = header.get("format_version")
        if version != FORMAT_VERSION:
            raise SftError(
                f"{path}: format_version {version!r} is not supported (this sft reads version "
                f"{FORMAT_VERSION}); prepare the data again with this version"
            )
        return header

    def _load(self, stem: str, dtype: type) -> np.ndarray:
        path = self.directory / f"{stem}.npy"
        if not path.is_file():
            raise SftError(f"{self.directory}: {path.name} is missing; the dataset is incomplete")
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise SftError(f"{path}: unreadable array ({exc})") from None
        if array.dtype != np.dtype(dtype) or array.ndim != 1:
            raise SftError(f"{path}: expected a flat {np.dtype(dtype)} array, found {array.dtype} {array.shape}")
        return array

    def _check_consistent(self) -> None:
        n, total = len(self.sample_index), len(self.tokens)
        ok = (
            len(self.loss_mask) == total
            and len(self.seq_offsets) == n + 1
            and len(self.bin_offsets) >= 1
            and self.seq_offsets[0] == 0 and self.seq_offsets[-1] == total
            and self.bin_offsets[0] == 0 and self.bin_offsets[-1] == n
            and bool((np.diff(self.seq_offsets) >= 0).all())
            and bool((np.diff(self.bin_offsets) > 0).all())
        )
        if not ok:
            raise SftError(f"{self.directory}: the arrays do not agree with each other; the dataset is damaged")

    @property
    def num_sequences(self) -> int:
        return len(self.sample_index)

    @property
    def num_bins(self) -> int:
        return len(self.bin_offsets) - 1

    @property
    def pack_size(self) -> int | None:
        return self.header.get("pack_size")

    @property
    def sequence_lengths(self) -> np.ndarray:
        """Token ids per stored sequence, in stored order."""
        return np.diff(self.seq_offsets)

    def sequence(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Stored sequence ``i``: its ids (int32) and loss mask (bool), both memory-mapped views."""
        if not 0 <= i < self.num_sequences:
            raise IndexError(f"sequence {i} out of range 0..{self.num_sequences - 1}")
        start, end = int(self.seq_offsets[i]), int(self.seq_offsets[i + 1])
        return self.tokens[start:end], self.loss_mask[start:end]

    def bin_sequences(self, i: int) -> range:
        """The stored sequence numbers in bin ``i``."""
        if not 0 <= i < self.num_bins:
            raise IndexError(f"bin {i} out of range 0..{self.num_bins - 1}")
        return range(int(self.bin_offsets[i]), int(self.bin_offsets[i + 1]))

    def bin(self, i: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """The sequences of bin ``i``, in packing order."""
        return [self.sequence(k) for k in self.bin_sequences(i)]
