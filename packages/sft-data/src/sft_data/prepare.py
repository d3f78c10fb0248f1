"""``prepare``: validate JSONL files, tokenize, report statistics, optionally pack, write a dataset.

Invalid records fail the whole run (listing the first problems and the count) unless
``skip_invalid``; then they are counted in ``stats.json``. Nothing is written when it fails.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sft_data.config import DataConfig
from sft_data.errors import InvalidRecordsError, RecordProblem
from sft_data.reading import FileSamples, SampleReader, count_lines
from sft_data.registries import DataRegistries
from sft_data.tokenizers.base import Tokenizer
from sft_data.types import TokenizedSample

STATS_FILE = "stats.json"


@dataclass
class PrepareResult:
    samples: list[TokenizedSample]
    stats: dict[str, Any]
    files: list[FileSamples]
    bins: list[list[int]] | None = None
    problems: list[RecordProblem] = field(default_factory=list)
    chat: dict[str, Any] | None = None
    """The chat template the conversations were rendered with (``SampleBuilder.chat_settings``)."""


def length_percentiles(lengths: Sequence[int]) -> dict[str, int]:
    if not len(lengths):
        return {}
    values = np.percentile(np.asarray(lengths), [50, 90, 99, 100], method="higher")
    return {name: int(v) for name, v in zip(("p50", "p90", "p99", "max"), values, strict=True)}


def tokenize_files(
    inputs: Sequence[str | Path],
    tokenizer: Tokenizer,
    config: DataConfig,
    registries: DataRegistries | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PrepareResult:
    """Read and tokenize every record; ``progress(done, total)`` is called as records are read."""
    reader = SampleReader(config, tokenizer, registries)
    total = sum(count_lines(p) for p in inputs)
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress and (done % 256 == 0 or done == total):
            progress(done, total)

    samples: list[TokenizedSample] = []
    files, dropped = [], Counter()
    truncated = 0
    for path in inputs:
        info = FileSamples(str(path))
        files.append(info)
        for _, built in reader.read(path, info, tick):
            truncated += built.sample.truncated
            if built.dropped:
                dropped[built.dropped] += 1
            else:
                samples.append(built.sample)
    if progress:
        progress(total, total)
    problems = [p for info in files for p in info.problems]
    lengths = [len(s.input_ids) for s in samples]
    stats = {
        "samples": len(samples),
        "skipped_invalid": len(problems),
        "truncated": truncated,
        "dropped": sum(dropped.values()),
        "dropped_reasons": dict(dropped),
        "tokens": int(sum(lengths)),
        "trained_tokens": int(sum(s.num_trained for s in samples)),
        "length_percentiles": length_percentiles(lengths),
        "max_seq_length": config.max_seq_length,
        "formats": {info.path: info.format for info in files},
        "packing": None,
    }
    return PrepareResult(samples, stats, files, problems=problems, chat=reader.chat_settings())


def prepare(
    inputs: Sequence[str | Path],
    tokenizer: Tokenizer,
    config: DataConfig,
    output: str | Path | None = None,
    registries: DataRegistries | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PrepareResult:
    """Tokenize ``inputs``, pack when ``config.pack_size`` is set, and write ``output`` if given.

    Raises ``InvalidRecordsError`` when records are invalid and ``config.skip_invalid`` is off.
    """
    from sft_data.packing.plan import pack_samples
    from sft_data.store import write_prepared

    registries = registries or DataRegistries.from_plugin_manager()
    result = tokenize_files(inputs, tokenizer, config, registries, progress)
    if result.problems and not config.skip_invalid:
        raise InvalidRecordsError(result.problems, len(result.problems))
    if config.pack_size:
        algorithm = registries.packing_algorithms.get(config.packing_algorithm)
        result.bins, result.stats["packing"] = pack_samples(result.samples, config.pack_size, algorithm, config.seed)
    if output is not None:
        header = {
            "tokenizer": {"kind": tokenizer.kind, "fingerprint": tokenizer.fingerprint()},
            "data_config": config.to_dict(),
            "sources": [str(p) for p in inputs],
            "formats": result.stats["formats"],
            "chat": result.chat,
        }
        write_prepared(output, result.samples, bins=result.bins, pack_size=config.pack_size, header=header)
        (Path(output) / STATS_FILE).write_text(json.dumps(result.stats, indent=2) + "\n", encoding="utf-8")
    return result
