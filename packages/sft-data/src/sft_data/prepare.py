"""``prepare``: validate input files, tokenize, report statistics, optionally pack, write a dataset.

Invalid records fail the whole run (listing the first problems and the count) unless
``skip_invalid``; then they are counted in ``stats.json``. Nothing is written when it fails.

Input files are read as a stream of chunks (``sft_data.inputs``); chunks are built into samples in
this process or by ``workers`` processes (``sft_data.workers``), and the samples go to disk as they
come (``sft_data.spill``), so memory does not grow with the data. The output is the same bytes
whatever the number of workers: chunks are cut the same way and their results taken in order.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from sft_data.building import ChunkResult
from sft_data.config import DataConfig
from sft_data.errors import InvalidRecordsError, RecordProblem
from sft_data.formats.detect import detect_format
from sft_data.inputs import Chunk, decode_chunk, open_input
from sft_data.inputs.base import CHUNK_ROWS, RECORDS
from sft_data.inputs.lines import JsonLinesInput
from sft_data.reading import FileSamples
from sft_data.records import Record
from sft_data.registries import DataRegistries
from sft_data.spill import ListSink, SpillSink
from sft_data.tokenizers.base import Tokenizer
from sft_data.types import TokenizedSample
from sft_data.workers import build_chunks

STATS_FILE = "stats.json"
KEPT_PROBLEMS = 1000
"""Invalid records remembered by location (all of them are counted)."""

Progress = Callable[[int, int | None], None]


@dataclass
class PrepareResult:
    stats: dict[str, Any]
    files: list[FileSamples]
    bins: list[list[int]] | None = None
    problems: list[RecordProblem] = field(default_factory=list)
    """The first ``KEPT_PROBLEMS`` invalid records (``stats["skipped_invalid"]`` counts them all)."""
    chat: dict[str, Any] | None = None
    """The chat template the conversations were rendered with (``SampleBuilder.chat_settings``)."""
    samples: list[TokenizedSample] | None = None
    """Every sample, from ``tokenize_files`` only: ``prepare`` writes them to disk as they come."""


def length_percentiles(lengths: Sequence[int]) -> dict[str, int]:
    if not len(lengths):
        return {}
    values = np.percentile(np.asarray(lengths), [50, 90, 99, 100], method="higher")
    return {name: int(v) for name, v in zip(("p50", "p90", "p99", "max"), values, strict=True)}


def _own_reader(config: DataConfig, registries: DataRegistries):
    """A format's own ``read(path)`` when ``--format`` names a format that has one (CSV, ...)."""
    if config.format == "auto":
        return None
    return getattr(registries.formats.get(config.format), "read", None)


def _jobs(inputs: Sequence[str | Path], config: DataConfig, registries: DataRegistries,
          ) -> Iterator[tuple[int, Chunk, str | None]]:
    """``(input index, chunk, record format)`` for every chunk of every input, in order; the format is
    None for a file without any record (its chunks hold only problems)."""
    own_reader = _own_reader(config, registries)
    for index, path in enumerate(inputs):
        if own_reader is not None:
            items = iter(own_reader(path))
            for part in iter(lambda: list(islice(items, CHUNK_ROWS)), []):  # noqa: B023 - consumed here
                yield index, Chunk(str(path), RECORDS, part, len(part)), config.format
            continue
        source = open_input(path)
        format_name = config.format if config.format != "auto" else _detected_format(source, registries)
        for chunk in source.chunks():
            yield index, chunk, format_name


def _detected_format(source, registries: DataRegistries) -> str | None:
    """``--format auto``: the format of the file's first record (None when it has none)."""
    for chunk in source.chunks():
        for item in decode_chunk(chunk):
            if isinstance(item, Record):
                return detect_format(item.data, registries.formats, item.location).name
    return None


def _estimate(inputs: Sequence[str | Path], config: DataConfig, registries: DataRegistries) -> int | None:
    """Rows in all inputs for a progress bar, when cheap to know."""
    total = 0
    for path in inputs:
        own = _own_reader(config, registries) is not None
        rows = JsonLinesInput(path).estimate_rows() if own else open_input(path).estimate_rows()
        if rows is None:
            return None
        total += rows
    return max(total, 1)


class _Totals:
    """The statistics of what was built, gathered result by result in input order."""

    def __init__(self, inputs: Sequence[str | Path]):
        self.files = [FileSamples(str(path)) for path in inputs]
        self.truncated = self.invalid = self.tokens = self.trained = 0
        self.dropped: Counter[str] = Counter()
        self.problems: list[RecordProblem] = []
        self.chat: dict[str, dict] = {}
        self.format_order: list[str] = []

    def add(self, result: ChunkResult, index: int, format_name: str | None) -> None:
        info = self.files[index]
        if result.records and format_name is not None:
            info.format = info.format or format_name
            if format_name not in self.format_order:
                self.format_order.append(format_name)
            if result.chat is not None:
                self.chat.setdefault(format_name, result.chat)
        self.truncated += result.truncated
        self.dropped.update(result.dropped)
        self.invalid += len(result.problems)
        kept = result.problems[:max(KEPT_PROBLEMS - len(self.problems), 0)]
        self.problems.extend(kept)
        info.problems.extend(kept)
        self.tokens += int(result.lengths.sum())
        self.trained += int(np.count_nonzero(result.mask))

    def result(self, lengths: np.ndarray, config: DataConfig) -> PrepareResult:
        stats = {
            "samples": len(lengths),
            "skipped_invalid": self.invalid,
            "truncated": self.truncated,
            "dropped": sum(self.dropped.values()),
            "dropped_reasons": dict(self.dropped),
            "tokens": self.tokens,
            "trained_tokens": self.trained,
            "length_percentiles": length_percentiles(lengths),
            "max_seq_length": config.max_seq_length,
            "formats": {info.path: info.format for info in self.files},
            "packing": None,
        }
        # Chat settings of the first format (in order of first use) that rendered a conversation.
        chat = next((self.chat[name] for name in self.format_order if name in self.chat), None)
        return PrepareResult(stats, self.files, problems=self.problems, chat=chat)


def _build(inputs, tokenizer, config, registries, progress: Progress | None, workers: int,
           sink: SpillSink | ListSink) -> PrepareResult:
    totals = _Totals(inputs)
    total = _estimate(inputs, config, registries) if progress else None
    order: deque[tuple[int, str | None]] = deque()

    def jobs() -> Iterator[tuple[Chunk, str | None]]:
        for index, chunk, format_name in _jobs(inputs, config, registries):
            order.append((index, format_name))
            yield chunk, format_name

    done = 0
    for result in build_chunks(jobs(), config, tokenizer, registries, workers):
        totals.add(result, *order.popleft())
        sink.add(result)
        done += result.rows
        if progress and total is not None and done > total:
            total = done
        if progress:
            progress(done, total)
    if progress:
        progress(done, done)
    return totals.result(sink.lengths(), config)


def tokenize_files(
    inputs: Sequence[str | Path],
    tokenizer: Tokenizer,
    config: DataConfig,
    registries: DataRegistries | None = None,
    progress: Progress | None = None,
    workers: int = 1,
) -> PrepareResult:
    """Read and tokenize every record, keeping every sample in memory (``result.samples``)."""
    registries = registries or DataRegistries.from_plugin_manager()
    sink = ListSink()
    result = _build(inputs, tokenizer, config, registries, progress, workers, sink)
    result.samples = sink.samples
    return result


def prepare(
    inputs: Sequence[str | Path],
    tokenizer: Tokenizer,
    config: DataConfig,
    output: str | Path | None = None,
    registries: DataRegistries | None = None,
    progress: Progress | None = None,
    workers: int = 1,
) -> PrepareResult:
    """Tokenize ``inputs``, pack when ``config.pack_size`` is set, and write ``output`` if given.

    ``workers`` > 1 builds samples in that many processes (the same output, faster). Samples are
    spilled to a temporary directory beside ``output`` while they are built, not kept in memory.
    Raises ``InvalidRecordsError`` when records are invalid and ``config.skip_invalid`` is off.
    """
    from sft_data.packing.plan import pack_lengths
    from sft_data.store import write_prepared_arrays

    registries = registries or DataRegistries.from_plugin_manager()
    spill_parent = None
    if output is not None:
        spill_parent = Path(output).absolute().parent
        spill_parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".sft-prepare-", dir=spill_parent) as spill:
        sink = SpillSink(Path(spill))
        result = _build(inputs, tokenizer, config, registries, progress, workers, sink)
        if result.stats["skipped_invalid"] and not config.skip_invalid:
            raise InvalidRecordsError(result.problems, result.stats["skipped_invalid"])
        tokens, mask, lengths = sink.finish()
        if config.pack_size:
            algorithm = registries.packing_algorithms.get(config.packing_algorithm)
            result.bins, result.stats["packing"] = pack_lengths(lengths, config.pack_size, algorithm, config.seed)
        if output is not None:
            header = {
                "tokenizer": {"kind": tokenizer.kind, "fingerprint": tokenizer.fingerprint()},
                "data_config": config.to_dict(),
                "sources": [str(p) for p in inputs],
                "formats": result.stats["formats"],
                "chat": result.chat,
            }
            write_prepared_arrays(output, tokens, mask, lengths, bins=result.bins, pack_size=config.pack_size,
                                  header=header)
            (Path(output) / STATS_FILE).write_text(json.dumps(result.stats, indent=2) + "\n", encoding="utf-8")
        del tokens, mask  # memory maps of the spill files, which are removed next
    return result
