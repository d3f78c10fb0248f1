"""Where training is (``TrainState``) and how a checkpoint directory and its files are named.

Shared by the checkpoint writer (``checkpoint``) and its verifier (``checkpoint_verify``), so that
the verifier can be kept as is when the storage format changes.
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


def checkpoint_name(state: TrainState) -> str:
    name = f"megatron_gpt_sft--step={state.step:06d}-consumed_samples={state.consumed_samples}-epoch={state.epoch}"
    if state.val_loss is not None:
        name += f"-val_loss={state.val_loss:.6f}"
    return name


def checkpoint_step(name: str) -> int | None:
    """The step a checkpoint directory's name claims, or None for a name that is no checkpoint's."""
    match = NAME.match(name)
    return int(match.group(1)) if match else None


def _position(tp_rank: int, pp_rank: int, ep_rank: int | None) -> str:
    return f"tp{tp_rank:02d}_pp{pp_rank:03d}" + (f"_ep{ep_rank:02d}" if ep_rank is not None else "")


def model_file(tp_rank: int, pp_rank: int, ep_rank: int | None = None) -> str:
    """Model state of one (tensor, pipeline) position, written by its data-parallel rank 0; under
    expert parallelism one per expert-parallel rank too (each holds other experts)."""
    return f"model_{_position(tp_rank, pp_rank, ep_rank)}.pt"


def optim_file(tp_rank: int, pp_rank: int, ep_rank: int | None = None) -> str:
    return f"optim_{_position(tp_rank, pp_rank, ep_rank)}.pt"


def ep_ranks(ep_size: int) -> list[int | None]:
    """The expert-parallel file suffixes of a layout: none without expert parallelism."""
    return [None] if ep_size == 1 else list(range(ep_size))


def rng_file(rank: int) -> str:
    """Every rank's RNG states."""
    return f"rng_rank{rank:05d}.pt"
