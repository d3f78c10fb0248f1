"""Where training is (``TrainState``) and how a checkpoint directory and its files are named.

Shared by the checkpoint writer (``checkpoint``), its verifier (``checkpoint_verify``) and
``checkpoint_inspect``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

STATE_FILE = "state.json"
TMP_PREFIX = ".tmp-"
NAME = re.compile(r"^megatron_gpt_sft--step=(\d+)-consumed_samples=(\d+)-epoch=(\d+)(?:-val_loss=([0-9.]+|nan))?$")


@dataclass
class TrainState:
    """Where training is; saved in every checkpoint and passed to the event hooks."""

    step: int = 0
    consumed_samples: int = 0
    epoch: int = 0
    val_loss: float | None = None
    best_val_loss: float | None = None
    validations_without_improvement: int = 0
    run_dir: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Contents:
    """What this run's checkpoints hold beyond the weights' shapes, checked again on resume."""

    optimizer: str
    """``model.optim.name``."""
    distributed_optimizer: bool
    """Adam's state sharded over data-parallel ranks (megatron's distributed optimizer)."""
    peft: str | None = None
    """The PEFT method: the checkpoint then holds its adapters, not the frozen base."""

    def describe(self) -> dict[str, Any]:
        return {"optimizer": {"name": self.optimizer, "sharded_over_data_parallel": self.distributed_optimizer},
                "model": {"peft": self.peft, "base_weights_saved": self.peft is None}}


def checkpoint_name(state: TrainState) -> str:
    name = f"megatron_gpt_sft--step={state.step:06d}-consumed_samples={state.consumed_samples}-epoch={state.epoch}"
    if state.val_loss is not None:
        name += f"-val_loss={state.val_loss:.6f}"
    return name


def checkpoint_step(name: str) -> int | None:
    """The step a checkpoint directory's name claims, or None for a name that is no checkpoint's."""
    match = NAME.match(name)
    return int(match.group(1)) if match else None


DIST_DIR = "dist"
"""The megatron-core dist checkpoint (torch_dist) of model and optimizer state, written by every rank."""
FORMAT = 2
"""Checkpoint layout version, in ``state.json`` as ``format``. 1 (no ``format`` key): per-rank
``torch.save`` files (``model_tp*_pp*.pt``, ``optim_tp*_pp*.pt``) that resumed only at the same
TP, PP and world size; 2: ``dist/`` (resharded on load) and per-rank RNG files."""
LEGACY_FILE = "model_tp00_pp000.pt"
"""A file every format-1 checkpoint has."""


def rng_file(rank: int) -> str:
    """Every rank's RNG states."""
    return f"rng_rank{rank:05d}.pt"
