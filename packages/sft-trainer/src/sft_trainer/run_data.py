"""A run's data: the prepared training and validation sets as this rank's batch sources.

Rows are padded per micro-batch unless they must all have one length: packed data, pipeline stages
(which exchange fixed shapes) and experts' token exchange (expert parallelism) use the pack size or
``max_seq_length``. Under sequence parallelism every row's positions are split evenly over the
tensor-parallel ranks, so row lengths are multiples of TP too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sft_core import SftError
from sft_data.registries import DataRegistries

from sft_trainer.config.schema import TrainConfig
from sft_trainer.data import (
    BatchPlan,
    BatchSource,
    data_config,
    dropped_line,
    resolve_dataset,
    resolve_sources,
)
from sft_trainer.distributed import Topology, barrier


@dataclass
class RunData:
    train: BatchSource
    val: BatchSource | None
    val_data: Any
    """The prepared validation set (generation metrics read its samples), or None."""
    chat: dict[str, Any] | None
    """The chat template the training data was rendered with (stored in the exported .nemo)."""


def prepare_data(cfg: TrainConfig, topo: Topology, tokenizer, run_dir: Path, registries: DataRegistries, *,
                 sequence_parallel: bool) -> RunData:
    """Prepare (or reuse from ``run_dir/data_cache``) both datasets and build this rank's sources."""
    m = cfg.model
    cache = run_dir / "data_cache"
    fixed = None
    if topo.pp_size > 1 or topo.ep_size > 1:  # stages, and experts' token exchange, need one row length
        fixed = m.data.train_ds.max_seq_length
    train_cfg = data_config(m.data, m.data.train_ds, m.answer_only_loss, m.seed)
    train_data, weights = resolve_sources(m.data.train_ds, tokenizer, train_cfg, cache, registries, topo.is_main,
                                          barrier)
    val_cfg = data_config(m.data, m.data.validation_ds, m.answer_only_loss, m.seed)
    val_data = resolve_dataset(m.data.validation_ds.paths(), tokenizer, val_cfg, cache, registries, topo.is_main,
                               barrier)  # every validation sample once: several files are concatenated
    if topo.is_main:
        _report_drops(train_data, val_data, m.data.train_ds.paths())
    pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else (tokenizer.eos_id or 0)
    plan = BatchPlan(m.global_batch_size, m.micro_batch_size, topo.dp_size)
    # the chat template the data was rendered with (every source of a mix is prepared with one config)
    chat = (train_data[0] if isinstance(train_data, list) else train_data).header.get("chat")
    train_source = BatchSource(train_data, plan, seed=m.seed, dp_rank=topo.dp_rank, shuffle=m.data.train_ds.shuffle,
                               pad_id=pad_id, fixed_length=fixed, weights=weights)
    val_source = _val_source(val_data, cfg, topo, pad_id, fixed)
    if sequence_parallel:
        rows_split_evenly([("model.data.train_ds", train_source), ("model.data.validation_ds", val_source)],
                          topo.tp_size)
    return RunData(train_source, val_source, val_data, chat)


def _val_source(dataset, cfg: TrainConfig, topo: Topology, pad_id: int, fixed: int | None) -> BatchSource | None:
    if dataset is None:
        return None
    ds = cfg.model.data.validation_ds  # the reference's validation batch sizes, else the run's
    micro = ds.micro_batch_size or cfg.model.micro_batch_size
    unit = micro * topo.dp_size
    gbs = min(ds.global_batch_size or cfg.model.global_batch_size, dataset.num_bins // unit * unit)
    if gbs < unit:
        raise SftError(f"the validation data has {dataset.num_bins} rows, fewer than micro_batch_size × "
                       f"data-parallel size ({unit})")
    plan = BatchPlan(gbs // unit * unit, micro, topo.dp_size)
    return BatchSource(dataset, plan, seed=cfg.model.seed, dp_rank=topo.dp_rank, shuffle=False, pad_id=pad_id,
                       fixed_length=fixed)


def rows_split_evenly(sources: list[tuple[str, BatchSource | None]], tp: int) -> None:
    """Sequence parallelism gives each tensor-parallel rank an equal slice of every row's positions:
    padded rows are padded to a multiple of TP too; a fixed row length (packed data, or the
    max_seq_length of pipeline or expert parallelism) must already be one."""
    for key, source in sources:
        if source is None:
            continue
        length = source.collate.pack_size
        if length is None:
            source.collate.multiple_of = math.lcm(source.collate.multiple_of, tp)
        elif length % tp:
            raise SftError(f"{key}: rows of {length} positions (the pack size or max_seq_length) cannot be split "
                           f"evenly over tensor_model_parallel_size={tp} under sequence parallelism "
                           f"(model.sequence_parallel=true, or a mixture-of-experts model); use a multiple of {tp}")


def _report_drops(train_data, val_data, train_paths: list[str]) -> None:
    """One line per dataset whose preparation dropped samples (too short, too long, nothing trained)."""
    sources = train_data if isinstance(train_data, list) else [train_data]
    names = [f"model.data.train_ds ({p})" for p in train_paths] if len(sources) > 1 else ["model.data.train_ds"]
    for name, data in [*zip(names, sources, strict=True), ("model.data.validation_ds", val_data)]:
        line = dropped_line(name, data) if data is not None else None
        if line:
            print(line)
