"""A chunk of input rows built into samples, packed flat for the trip back to the process that writes.

``ChunkBuilder`` holds everything fixed for a run (config, tokenizer, registries and a
``SampleBuilder`` per record format); it runs in the preparing process or in each worker process
(``sft_data.workers``) and gives the same ``ChunkResult`` for the same chunk wherever it runs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np

from sft_data.config import DataConfig
from sft_data.errors import RecordError, RecordProblem
from sft_data.inputs import Chunk, decode_chunk
from sft_data.registries import DataRegistries
from sft_data.samples import SampleBuilder
from sft_data.store import token_array
from sft_data.tokenizers.base import Tokenizer
from sft_data.types import TokenizedSample


@dataclass
class ChunkResult:
    """The kept samples of one chunk as flat arrays, and what happened to the other rows."""

    path: str
    rows: int
    """Rows the chunk stood for (progress)."""
    records: int
    """Rows that were JSON objects (records), valid for the format or not."""
    tokens: np.ndarray
    """int32 ids of the kept samples, back to back."""
    mask: np.ndarray
    """uint8 loss mask, aligned with ``tokens``."""
    lengths: np.ndarray
    """int64 ids per kept sample."""
    sample_rows: np.ndarray
    """int64 row of each kept sample in its file."""
    truncated_kept: np.ndarray
    """bool per kept sample: it was truncated."""
    truncated: int = 0
    """Samples truncated, dropped ones included (as ``stats.json`` counts them)."""
    dropped: dict[str, int] = field(default_factory=dict)
    """Why samples were dropped, with counts, in the order the reasons first occurred."""
    problems: list[RecordProblem] = field(default_factory=list)
    """Invalid rows, in row order."""
    chat: dict[str, Any] | None = None
    """``SampleBuilder.chat_settings`` after this chunk (None for prompt-response data)."""
    stderr: str = ""
    """What building wrote to stderr in a worker process (warnings), for the parent to show once."""

    def samples(self) -> list[TokenizedSample]:
        """The kept samples as ``TokenizedSample`` objects (for callers that keep them in memory)."""
        ends = np.cumsum(self.lengths)
        starts = ends - self.lengths
        return [
            TokenizedSample(self.tokens[s:e].tolist(), self.mask[s:e].astype(bool).tolist(), truncated=bool(t),
                            source=f"{self.path}:{row}")
            for s, e, t, row in zip(starts.tolist(), ends.tolist(), self.truncated_kept.tolist(),
                                    self.sample_rows.tolist(), strict=True)
        ]


class ChunkBuilder:
    def __init__(self, config: DataConfig, tokenizer: Tokenizer, registries: DataRegistries):
        self.config = config
        self.tokenizer = tokenizer
        self.registries = registries
        self._builders: dict[str, SampleBuilder] = {}

    def builder(self, format_name: str) -> SampleBuilder:
        if format_name not in self._builders:
            fmt = self.registries.formats.get(format_name)
            self._builders[format_name] = SampleBuilder(self.config, self.tokenizer, fmt, self.registries)
        return self._builders[format_name]

    def __call__(self, chunk: Chunk, format_name: str | None) -> ChunkResult:
        """Build ``chunk``'s rows with the record format ``format_name`` (None: the file has no
        record at all, so the chunk holds only problems)."""
        records = []
        problems: list[RecordProblem] = []
        for item in decode_chunk(chunk):
            (problems if isinstance(item, RecordProblem) else records).append(item)
        kept: list[tuple[int, TokenizedSample]] = []
        truncated, dropped = 0, Counter()
        builder = self.builder(format_name) if records and format_name is not None else None
        if builder is not None:
            results = builder.build_many([(record.data, record.location) for record in records])
            for record, result in zip(records, results, strict=True):
                if isinstance(result, RecordError):
                    problems.append(RecordProblem(record.path, record.line, str(result)))
                    continue
                truncated += result.sample.truncated
                if result.dropped:
                    dropped[result.dropped] += 1
                else:
                    kept.append((record.line, result.sample))
        problems.sort(key=lambda p: p.line)
        samples = [s for _, s in kept]
        lengths = np.fromiter((len(s.input_ids) for s in samples), dtype=np.int64, count=len(samples))
        total = int(lengths.sum())
        return ChunkResult(
            path=chunk.path,
            rows=chunk.rows,
            records=len(records),
            tokens=token_array(chain.from_iterable(s.input_ids for s in samples), total),
            mask=np.fromiter(chain.from_iterable(s.loss_mask for s in samples), dtype=np.uint8, count=total),
            lengths=lengths,
            sample_rows=np.fromiter((row for row, _ in kept), dtype=np.int64, count=len(kept)),
            truncated_kept=np.fromiter((s.truncated for s in samples), dtype=np.bool_, count=len(samples)),
            truncated=truncated,
            dropped=dict(dropped),
            problems=problems,
            chat=builder.chat_settings() if builder is not None else None,
        )
