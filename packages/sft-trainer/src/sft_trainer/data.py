"""Training and validation data for a run: prepared directories used as they are, raw inputs (JSON
Lines, JSON arrays, Parquet, Arrow, ``datasets`` directories) prepared on the fly as ``sft prepare``
does (one worker process per core) and cached by content hash, several files concatenated or mixed by weight
(``concat_sampling_probabilities``, see ``sft_data.mixture``), batches cut into micro-batches per
data-parallel rank."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from sft_core import SftError
from sft_data.config import DataConfig
from sft_data.dataset import BinDataset, Collator
from sft_data.inputs import is_input_directory
from sft_data.mixture import MixedBins, MixtureSampler
from sft_data.prepare import STATS_FILE, prepare
from sft_data.registries import DataRegistries
from sft_data.sampler import GlobalBatchSampler
from sft_data.store import HEADER, PreparedDataset
from sft_data.tokenizers.base import Tokenizer
from sft_data.workers import default_workers

from sft_trainer.config.schema import DataSection, DatasetConfig


def data_config(section: DataSection, ds: DatasetConfig, answer_only_loss: bool, seed: int) -> DataConfig:
    """The sft-data settings of one dataset section (the reference's model.data.*_ds keys)."""
    return ds.data_config(section, answer_only_loss, seed)


def _files(file_path: str | list[str]) -> list[Path]:
    paths = [Path(p) for p in ([file_path] if isinstance(file_path, str) else file_path)]
    for path in paths:
        if not path.exists():
            raise SftError(f"data file not found: {path}")
    return paths


def _hash_file(digest, path: Path) -> None:
    with path.open("rb") as handle:  # a block at a time: inputs may be larger than memory
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)


def cache_key(files: list[Path], tokenizer: Tokenizer, config: DataConfig) -> str:
    digest = hashlib.sha256()
    for path in files:
        for file in sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]:
            digest.update(str(file.relative_to(path) if path.is_dir() else "").encode())
            _hash_file(digest, file)
    if config.tools and Path(config.tools).is_file():  # the tools file's content, not only its name
        _hash_file(digest, Path(config.tools))
    digest.update(tokenizer.fingerprint().encode())
    digest.update(json.dumps(config.to_dict(), sort_keys=True, default=str).encode())
    return digest.hexdigest()[:24]


def resolve_dataset(
    file_path: str | list[str] | None, tokenizer: Tokenizer, config: DataConfig, cache_dir: Path,
    registries: DataRegistries, is_writer: bool, barrier,
) -> PreparedDataset | None:
    """A prepared dataset for ``file_path``: a ``sft prepare`` directory as is, or raw inputs prepared
    once (by the writer rank, with a worker per core; the others wait) into ``cache_dir/<content hash>``."""
    if file_path is None:
        return None
    files = _files(file_path)
    if len(files) == 1 and files[0].is_dir() and (files[0] / HEADER).is_file():
        return PreparedDataset(files[0])
    for path in files:
        if path.is_dir() and not is_input_directory(path):
            raise SftError(f"{path} is a directory but neither a dataset written by `sft prepare` nor one "
                           "written by datasets' save_to_disk")
    target = cache_dir / cache_key(files, tokenizer, config)
    if is_writer and not (target / HEADER).is_file():
        prepare(files, tokenizer, config, target, registries, workers=default_workers())
    barrier()
    return PreparedDataset(target)


def resolve_sources(
    ds: DatasetConfig, tokenizer: Tokenizer, config: DataConfig, cache_dir: Path, registries: DataRegistries,
    is_writer: bool, barrier,
) -> tuple[PreparedDataset | list[PreparedDataset] | None, list[float] | None]:
    """A dataset section's data: one prepared dataset (its files concatenated), or, with
    ``concat_sampling_probabilities`` and several files, one per file and their weights."""
    paths = ds.paths()
    weights = ds.concat_sampling_probabilities
    if paths is None or weights is None or len(paths) == 1:
        return resolve_dataset(paths, tokenizer, config, cache_dir, registries, is_writer, barrier), None
    return [resolve_dataset(p, tokenizer, config, cache_dir, registries, is_writer, barrier) for p in paths], weights


def dropped_line(key: str, dataset: PreparedDataset) -> str | None:
    """One line naming the samples preparing ``dataset`` dropped, and why (None when none were)."""
    try:
        stats = json.loads((dataset.directory / STATS_FILE).read_text(encoding="utf-8"))
        dropped, reasons, kept = int(stats["dropped"]), dict(stats["dropped_reasons"]), int(stats["samples"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a dataset prepared without stats (imported): nothing was dropped here
    if not dropped:
        return None
    why = "; ".join(f"{reason}: {count}" for reason, count in reasons.items())
    return f"{key}: {dropped} of {dropped + kept} samples dropped ({why})"


@dataclass
class BatchPlan:
    """How one global batch is split: ``global = micro × num_microbatches × dp``."""

    global_batch_size: int
    micro_batch_size: int
    dp_size: int

    def __post_init__(self) -> None:
        per_rank, rest = divmod(self.global_batch_size, self.dp_size)
        if rest or per_rank % self.micro_batch_size:
            raise SftError(
                f"model.global_batch_size ({self.global_batch_size}) must be a multiple of "
                f"micro_batch_size × data-parallel size ({self.micro_batch_size} × {self.dp_size})"
            )

    @property
    def num_microbatches(self) -> int:
        return self.global_batch_size // (self.micro_batch_size * self.dp_size)


class BatchSource:
    """Global batches of one dataset for this rank, as lists of collated micro-batches."""

    def __init__(self, dataset: PreparedDataset | Sequence[PreparedDataset], plan: BatchPlan, *, seed: int,
                 dp_rank: int, shuffle: bool, pad_id: int, fixed_length: int | None,
                 weights: Sequence[float] | None = None):
        """``dataset`` one prepared dataset, or several mixed with ``weights`` (one per dataset)."""
        self.plan = plan
        if weights is None:
            self.dataset = BinDataset(dataset)
            self.sampler = GlobalBatchSampler(len(self.dataset), plan.global_batch_size, seed=seed, dp_rank=dp_rank,
                                              dp_size=plan.dp_size, shuffle=shuffle)
        else:
            self.dataset = MixedBins(dataset)
            self.sampler = MixtureSampler(self.dataset.sizes, weights, plan.global_batch_size, seed=seed,
                                          dp_rank=dp_rank, dp_size=plan.dp_size, shuffle=shuffle)
        # Pipeline stages exchange fixed shapes, so PP runs pad every row to one length.
        self.collate = Collator(pack_size=self.dataset.pack_size or fixed_length, pad_id=pad_id)

    @property
    def batches_per_epoch(self) -> int:
        return self.sampler.batches_per_epoch

    def microbatches(self, indices: list[int]) -> list[dict[str, Any]]:
        mbs = self.plan.micro_batch_size
        out = []
        for j in range(0, len(indices), mbs):
            bins = [self.dataset[i] for i in indices[j : j + mbs]]
            batch = self.collate(bins)
            batch["num_tokens"] = torch.tensor(sum(len(ids) - 1 for b in bins for ids, _ in b))
            out.append(batch)
        return out

    def batch_at(self, consumed_samples: int) -> list[dict[str, torch.Tensor]]:
        """The micro-batches of the global batch that starts after ``consumed_samples`` items."""
        per_epoch = self.sampler.samples_per_epoch
        epoch, offset = divmod(consumed_samples, per_epoch)
        batch = self.sampler.global_batch(epoch, offset // self.plan.global_batch_size)
        return self.microbatches(self.sampler.rank_slice(batch))

    def epoch_batches(self, limit: int | None = None) -> Iterator[list[dict[str, torch.Tensor]]]:
        """Validation: the batches of epoch 0 in order, at most ``limit`` of them."""
        count = self.batches_per_epoch if limit is None else min(limit, self.batches_per_epoch)
        for index in range(count):
            yield self.microbatches(self.sampler.rank_slice(self.sampler.global_batch(0, index)))
