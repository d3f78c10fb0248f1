"""Where a run starts: the checkpoint ``model.resume_from_checkpoint`` names, else the newest in the
run directory that verifies (``exp_manager.resume_if_exists``), else the beginning.

A named checkpoint is verified as the automatic resume's candidates are (``checkpoint_verify``);
one that does not verify stops the run with one line saying why, rather than falling back to
another checkpoint than the one asked for. It may belong to another run directory: training
continues from it and saves into this run's directory.
"""

from __future__ import annotations

from pathlib import Path

from sft_trainer.checkpoint import CheckpointError, CheckpointManager, TrainState
from sft_trainer.checkpoint_load import load_checkpoint, same_layout
from sft_trainer.checkpoint_verify import verify
from sft_trainer.config.schema import TrainConfig
from sft_trainer.distributed import Topology, broadcast_object
from sft_trainer.train_state import Contents

KEY = "model.resume_from_checkpoint"


def named_checkpoint(value: str, topo: Topology) -> Path:
    """The checkpoint ``value`` names, verified by rank 0 for every rank."""
    path = Path(value)
    problem = broadcast_object(verify(path) if topo.is_main else None)
    if problem:
        raise CheckpointError(f"{KEY}={value} cannot be resumed from: {problem}")
    return path


def starting_state(cfg: TrainConfig, run_dir: Path, checkpoints: CheckpointManager | None, topo: Topology,
                   model_chunks, optimizer, contents: Contents) -> TrainState:
    """The state to train on from, with model, optimizer and RNG restored when it is a checkpoint's."""
    how = ""
    if cfg.model.resume_from_checkpoint:
        path = named_checkpoint(cfg.model.resume_from_checkpoint, topo)
        how = f" ({KEY})"
    elif checkpoints is not None and cfg.exp_manager.resume_if_exists:
        path = checkpoints.latest()
    else:
        path = None
    if path is None:
        return TrainState(run_dir=str(run_dir))
    meta = load_checkpoint(path, topo, model_chunks, optimizer, contents)
    state = TrainState(**{**meta["state"], "run_dir": str(run_dir)})
    if topo.is_main:
        print(f"resuming from {path.name} (step {state.step}){how}")
        if not same_layout(meta, topo) or meta["dp_size"] != topo.dp_size:
            saved = _layout(meta["tp_size"], meta["pp_size"], meta["dp_size"], meta.get("ep_size", 1))
            print(f"  saved at {saved}, resharded to {_layout(topo.tp_size, topo.pp_size, topo.dp_size, topo.ep_size)}"
                  + ("" if same_layout(meta, topo) else "; RNG streams continue from this run's seed"))
    return state


def _layout(tp: int, pp: int, dp: int, ep: int) -> str:
    return f"TP={tp} PP={pp} DP={dp}" + (f" EP={ep}" if ep > 1 else "")
