"""``train(config)``: everything a run needs, put together, then the loop, then the final .nemo."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import pluggy
from sft_core import EventDispatcher, SftError, collect
from sft_data.registries import DataRegistries

from sft_trainer.adapters import restore_adapter
from sft_trainer.budget import Budget
from sft_trainer.checkpoint import CheckpointManager, TrainState
from sft_trainer.config.loading import dump_config
from sft_trainer.config.reference_keys import unused_table
from sft_trainer.config.schema import TrainConfig
from sft_trainer.config.structured import to_dict
from sft_trainer.deadline import Deadline
from sft_trainer.distributed import Topology, first_failure, setup, trainable_parameter_count
from sft_trainer.loggers.base import LoggerPlugin, RunInfo
from sft_trainer.loop import Loop
from sft_trainer.model_io import PeftBinding, export_nemo, load_base_model
from sft_trainer.optim import build_optimizer, training_dtype, uses_distributed_optimizer, wrap_ddp
from sft_trainer.resume import starting_state
from sft_trainer.run_data import prepare_data
from sft_trainer.schedule import CosineAnnealing
from sft_trainer.train_state import Contents
from sft_trainer.write_errors import WriteFailed, as_write_failure

FINAL_NEMO = "megatron_gpt_sft.nemo"
UNFINISHED = ("SIGTERM", "SIGINT", "max_time")
"""Why a run stopped before its end: it resumes later, and the final .nemo waits for that."""


@dataclass
class TrainResult:
    run_dir: Path
    state: TrainState
    nemo_path: Path | None


def run_directory(cfg: TrainConfig) -> Path:
    em = cfg.exp_manager
    if em.explicit_log_dir:
        return Path(em.explicit_log_dir)
    return Path(em.exp_dir or "results") / em.name


def train(cfg: TrainConfig, pm: pluggy.PluginManager | None = None) -> TrainResult:
    """Fine-tune ``cfg.model.restore_from_path`` on ``cfg.model.data``; resumable, see DESIGN.md."""
    max_time = cfg.trainer.max_time_seconds
    deadline = Deadline(max_time) if max_time is not None else None  # the clock counts loading too
    if pm is None:
        from sft_core import get_plugin_manager

        pm = get_plugin_manager()
    if not cfg.model.restore_from_path:
        raise SftError("model.restore_from_path is required: the .nemo model to fine-tune")
    if not cfg.model.data.train_ds.paths():
        raise SftError("model.data.train_ds.file_path is required")
    m = cfg.model
    topo = setup(m.tensor_model_parallel_size, m.pipeline_model_parallel_size, m.seed, m.expert_model_parallel_size)
    if not topo.is_main:
        _errors_only()
    run_dir = run_directory(cfg)
    _stop_on_failure(_write_config(run_dir, cfg) if topo.is_main else None)
    if topo.is_main:
        for line in [*unused_table(cfg.unused), *(f"warning: {w}" for w in cfg.warnings)]:
            print(line)
    registries = DataRegistries.from_plugin_manager(pm)
    dtype = training_dtype(cfg)
    peft = None
    if m.peft.peft_scheme != "none":
        peft = PeftBinding(collect(pm, "sft_register_peft_methods", "PEFT method").get(m.peft.peft_scheme),
                           to_dict(cfg)["model"]["peft"])
    sequence_parallel = _sequence_parallel(cfg, topo)
    base = load_base_model(m.restore_from_path, registries, dtype=dtype, peft=peft,
                           overrides={**m.model_overrides(), "sequence_parallel": sequence_parallel})
    if peft is not None:
        peft.method.apply(base.chunks, peft.config, base.config)
        trainable = trainable_parameter_count(base.chunks)  # the method's own count is this rank's share
        if topo.is_main:
            print(f"PEFT {m.peft.peft_scheme}: {trainable:,} trainable parameters")
        if m.peft.restore_from_path:
            restore_adapter(base, m.peft.restore_from_path, m.peft.peft_scheme, m.restore_from_path,
                            is_main=topo.is_main)
    distributed = uses_distributed_optimizer(cfg)
    chunks = wrap_ddp(base.chunks, distributed)
    optimizer = build_optimizer(chunks, cfg, dtype, distributed)
    contents = Contents(m.optim.name, distributed, m.peft.peft_scheme if peft is not None else None)

    data = prepare_data(cfg, topo, base.tokenizer, run_dir, registries, sequence_parallel=sequence_parallel)
    train_source, val_source = data.train, data.val
    budget = Budget.plan(cfg.trainer.sft, train_source.batches_per_epoch,
                         val_source.batches_per_epoch if val_source else 0)
    sched = m.optim.sched
    schedule = CosineAnnealing(m.optim.lr, sched.min_lr, sched.warmup_steps, sched.constant_steps, budget.max_steps)
    if topo.is_main and (note := schedule.note()):
        print(note)

    ckpt_params = cfg.exp_manager.checkpoint_callback_params
    checkpoints = (CheckpointManager(run_dir / "checkpoints", topo, ckpt_params.save_top_k, ckpt_params.mode,
                                     to_dict(cfg), contents)
                   if cfg.exp_manager.create_checkpoint_callback else None)
    state = starting_state(cfg, run_dir, checkpoints, topo, chunks, optimizer, contents)

    events = EventDispatcher(pm, enabled=topo.is_main)
    from sft_trainer.generation.validation import build_evaluator

    inference = build_evaluator(cfg, pm, base.loaded.handle, data.val_data, base.tokenizer, registries, topo)
    loop = Loop(cfg=cfg, topo=topo, model_chunks=chunks, optimizer=optimizer, train=train_source, val=val_source,
                budget=budget, schedule=schedule, checkpoints=checkpoints, events=events,
                state=state, use_te=base.use_te, inference=inference, deadline=deadline,
                export_validated=(lambda: export_nemo(run_dir / "checkpoints" / FINAL_NEMO, base, cfg, topo,
                                                      chat=data.chat))
                if m.save_nemo_on_validation_end else None)
    loggers, problem = [], None
    if topo.is_main:
        loggers, problem = _start_loggers(pm, RunInfo(run_dir, cfg, budget.max_steps, state.step))
    try:
        _stop_on_failure(problem)
        state = loop.run()
    finally:
        for logger in loggers:
            pm.unregister(logger)
    nemo_path = None
    if state.extra.get("stopped") == "max_time" and topo.is_main:
        print(f"trainer.max_time={cfg.trainer.max_time!r}: stopped after step {state.step}, before one more step and "
              f"a checkpoint could pass the limit; run the same command again to resume")
    if ckpt_params.save_nemo_on_train_end and state.extra.get("stopped") not in UNFINISHED:
        nemo_path = run_dir / "checkpoints" / FINAL_NEMO
        export_nemo(nemo_path, base, cfg, topo, chat=data.chat)
    if topo.is_main:
        _write_report(run_dir)
    return TrainResult(run_dir, state, nemo_path)


def _errors_only() -> None:
    """Ranks other than 0 log errors only: rank 0 says everything once (the other ranks' copies of
    each warning, one per GPU of every node, would bury it); an error still shows on its rank."""
    import logging
    import warnings

    logging.getLogger().setLevel(logging.ERROR)
    for name in ("megatron", "torch", "sft_trainer", "sft_model", "sft_data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.simplefilter("ignore")


def _sequence_parallel(cfg: TrainConfig, topo: Topology) -> bool:
    """Sequence parallelism under TP: the user's ``model.sequence_parallel``, and always for MoE models
    (megatron-core trains MoE layers under TP only sequence-parallel). Expert parallelism needs experts."""
    from sft_model import read_config

    path, config = cfg.model.restore_from_path, read_config(cfg.model.restore_from_path)
    if topo.ep_size > 1 and not config.is_moe:
        raise SftError(f"model.expert_model_parallel_size={topo.ep_size} needs a mixture-of-experts model; {path} has "
                       "no experts")
    if topo.tp_size == 1:
        return False
    if config.is_moe and not cfg.model.sequence_parallel and topo.is_main:
        print(f"sequence parallelism on: {path} is a mixture-of-experts model, which megatron-core trains under "
              "tensor parallelism only sequence-parallel")
    return cfg.model.sequence_parallel or config.is_moe


def _stop_on_failure(problem: str | None) -> None:
    """Every rank stops when a rank-0-only step (run-level files) failed."""
    failure = first_failure(problem)
    if failure:
        raise WriteFailed(failure)


def _write_config(run_dir: Path, cfg: TrainConfig) -> str | None:
    path = run_dir / "config.yaml"
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(dump_config(cfg), encoding="utf-8")
    except OSError as exc:
        return str(as_write_failure(exc, path))
    return None


def _start_loggers(pm: pluggy.PluginManager, run: RunInfo) -> tuple[list[LoggerPlugin], str | None]:
    """Rank 0's loggers, each registered as a plugin of this run; one that cannot start is skipped
    with a warning, unless it is ``required`` (metrics.jsonl): then the run stops, with the reason."""
    config = to_dict(run.config)
    started = []
    for entry in collect(pm, "sft_register_loggers", "logger"):
        try:
            logger = entry.value.create(run)
        except Exception as exc:
            if getattr(entry.value, "required", False):
                for plugin in started:  # the run stops before it starts: close what was opened
                    with contextlib.suppress(Exception):
                        plugin.logger.close()
                return started, f"logger {entry.name!r} could not start: {exc}"
            print(f"warning: logger {entry.name!r} could not start ({type(exc).__name__}: {exc}); skipped")
            continue
        if logger is not None:
            plugin = LoggerPlugin(entry.name, logger, config)
            pm.register(plugin, name=plugin.name)
            started.append(plugin)
    return started, None


def _write_report(run_dir: Path) -> None:
    """RUN_DIR/report.png; the run already succeeded, so a report that fails only warns."""
    from sft_trainer.report import write_report

    try:
        path, _ = write_report(run_dir)
        print(f"report: {path}")
    except Exception as exc:
        print(f"warning: the run report could not be written ({type(exc).__name__}: {exc})")
