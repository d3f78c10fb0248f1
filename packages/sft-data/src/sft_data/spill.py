"""Where built samples go as they come: flat files on disk (``prepare``) or a list (``tokenize_files``).

Samples arrive chunk by chunk in input order. ``SpillSink`` appends their ids and masks to two raw
files and keeps only their lengths in memory (8 bytes a sample), so a data set larger than memory
prepares; the files are memory-mapped afterwards and copied into bin order by
``store.write_prepared_arrays``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sft_data.building import ChunkResult
from sft_data.types import TokenizedSample


class SpillSink:
    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self._tokens = (self.directory / "tokens.bin").open("wb")
        self._mask = (self.directory / "mask.bin").open("wb")
        self._lengths: list[np.ndarray] = []
        self.count = 0

    def add(self, result: ChunkResult) -> None:
        if not len(result.lengths):
            return
        self._tokens.write(result.tokens.astype(np.int32, copy=False).tobytes())
        self._mask.write(result.mask.astype(np.uint8, copy=False).tobytes())
        self._lengths.append(result.lengths)
        self.count += len(result.lengths)

    def lengths(self) -> np.ndarray:
        return np.concatenate(self._lengths) if self._lengths else np.zeros(0, dtype=np.int64)

    def finish(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(tokens, mask, lengths)``: the spilled samples, memory-mapped, in input order."""
        self._tokens.close()
        self._mask.close()
        lengths = self.lengths()
        if not int(lengths.sum()):
            return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.uint8), lengths
        tokens = np.memmap(self.directory / "tokens.bin", dtype=np.int32, mode="r")
        mask = np.memmap(self.directory / "mask.bin", dtype=np.uint8, mode="r")
        return tokens, mask, lengths


class ListSink:
    """Keeps every sample as a ``TokenizedSample`` (small data, tests, previews of statistics)."""

    def __init__(self):
        self.samples: list[TokenizedSample] = []
        self._lengths: list[np.ndarray] = []

    def add(self, result: ChunkResult) -> None:
        self.samples.extend(result.samples())
        self._lengths.append(result.lengths)

    def lengths(self) -> np.ndarray:
        return np.concatenate(self._lengths) if self._lengths else np.zeros(0, dtype=np.int64)
