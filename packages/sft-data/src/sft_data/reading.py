"""Records of one file turned into samples in this process: format detection, building, problem
collection (``sft preview``; ``prepare`` builds chunks, maybe in workers: ``sft_data.prepare``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sft_data.config import DataConfig
from sft_data.errors import RecordError, RecordProblem
from sft_data.formats.detect import detect_format
from sft_data.inputs import read_input
from sft_data.records import Record
from sft_data.registries import DataRegistries
from sft_data.samples import BuiltSample, SampleBuilder
from sft_data.tokenizers.base import Tokenizer

BATCH_SIZE = 256
"""Records built per tokenizer call: large enough to amortise the call, small enough for previews."""


@dataclass
class FileSamples:
    """What reading one file produced (filled while iterating ``SampleReader.read``)."""

    path: str
    format: str | None = None
    problems: list[RecordProblem] = field(default_factory=list)


class SampleReader:
    """Builds samples from data files (JSON Lines, or a format's own reader) with one tokenizer and config."""

    def __init__(self, config: DataConfig, tokenizer: Tokenizer, registries: DataRegistries | None = None,
                 detail: bool = False):
        """``detail``: samples say which tokens are reasoning, tool calls, tool results (previews)."""
        self.config = config
        self.tokenizer = tokenizer
        self.registries = registries or DataRegistries.from_plugin_manager()
        self.detail = detail
        self._builders: dict[str, SampleBuilder] = {}

    def builder_for(self, record: Record) -> SampleBuilder:
        if self.config.format == "auto":
            fmt = detect_format(record.data, self.registries.formats, record.location)
        else:
            fmt = self.registries.formats.get(self.config.format)
        if fmt.name not in self._builders:
            self._builders[fmt.name] = SampleBuilder(self.config, self.tokenizer, fmt, self.registries, self.detail)
        return self._builders[fmt.name]

    def chat_settings(self) -> dict | None:
        """``SampleBuilder.chat_settings`` of the first builder that rendered a conversation."""
        return next((s for b in self._builders.values() if (s := b.chat_settings()) is not None), None)

    def records(self, path: str | Path) -> Iterator[Record | RecordProblem]:
        """The records of one file (any kind ``sft_data.inputs`` reads), unless ``--format`` names a
        format with its own reader.

        A format may define ``read(path)`` yielding ``Record`` (with its line number) or
        ``RecordProblem`` items, e.g. for CSV; ``auto`` never uses it, because detection looks at a
        parsed record and so cannot choose how the file is parsed.
        """
        if self.config.format != "auto":
            own_reader = getattr(self.registries.formats.get(self.config.format), "read", None)
            if own_reader is not None:
                return own_reader(path)
        return read_input(path)

    def read(
        self,
        path: str | Path,
        info: FileSamples | None = None,
        on_record: Callable[[], None] | None = None,
        batch_size: int = BATCH_SIZE,
    ) -> Iterator[tuple[Record, BuiltSample]]:
        """Yield ``(record, built)`` for valid records; invalid ones are appended to ``info.problems``.

        The format is chosen once per file, from its first valid record. Records are built
        ``batch_size`` at a time (one tokenizer call per batch); problems keep file order.
        """
        info = info if info is not None else FileSamples(str(path))
        builder: SampleBuilder | None = None
        batch: list[Record] = []
        for item in self.records(path):
            if on_record:
                on_record()
            if isinstance(item, RecordProblem):
                if builder is not None:
                    yield from self._flush(builder, batch, info)
                info.problems.append(item)
                continue
            if builder is None:
                builder = self.builder_for(item)
                info.format = builder.format.name
            batch.append(item)
            if len(batch) >= batch_size:
                yield from self._flush(builder, batch, info)
        if builder is not None:
            yield from self._flush(builder, batch, info)

    @staticmethod
    def _flush(builder: SampleBuilder, batch: list[Record], info: FileSamples) -> Iterator[tuple[Record, BuiltSample]]:
        results = builder.build_many([(record.data, record.location) for record in batch])
        records = list(batch)
        batch.clear()
        for record, result in zip(records, results, strict=True):
            if isinstance(result, RecordError):
                info.problems.append(RecordProblem(record.path, record.line, str(result)))
            else:
                yield record, result

