"""sft plugin: metrics and the training config to Weights & Biases, offline unless asked otherwise.

Registered through the ``sft`` entry point ``wandb``; enabled as in the reference by
``exp_manager.create_wandb_logger=True`` with ``exp_manager.wandb_logger_kwargs.{project,name}``.
Runs are offline by default (files under ``<run_dir>/wandb``, upload later with ``wandb sync``):
training never waits on, or fails because of, a network. ``wandb_logger_kwargs.offline=false``
(or ``WANDB_MODE``) selects another mode. Blocked with ``SFT_DISABLE_PLUGINS=wandb``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

from sft_core import hookimpl

INSTALL_HINT = "install it with `uv pip install wandb` (or `pip install sft-wandb`)"
# wandb_logger_kwargs keys passed to wandb.init as they are (the reference's WandbLogger accepts them).
INIT_KEYS = ("project", "name", "entity", "group", "tags", "notes", "id", "job_type", "resume")


class MissingDependencyError(RuntimeError):
    """The plugin is installed but ``wandb`` is not (one line, says how to fix it)."""


def _wandb():
    try:
        import wandb
    except ImportError:
        raise MissingDependencyError(f"the sft-wandb plugin needs the `wandb` package; {INSTALL_HINT}") from None
    return wandb


def run_mode(kwargs: dict[str, Any]) -> str:
    """``offline`` unless the config says ``offline: false`` or ``WANDB_MODE`` names a mode."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    return "offline" if kwargs.get("offline", True) else "online"


class WandbLogger:
    def __init__(self, run_dir, kwargs: dict[str, Any]):
        wandb = _wandb()
        run_dir.mkdir(parents=True, exist_ok=True)
        init = {k: kwargs[k] for k in INIT_KEYS if k in kwargs}
        save_dir = kwargs.get("save_dir") or str(run_dir)
        self.run = wandb.init(dir=save_dir, mode=run_mode(kwargs), reinit="create_new", **init)

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        # Same names as metrics.jsonl; W&B's history has no NaN/Inf, so they go as strings.
        clean = {k: (v if not isinstance(v, float) or math.isfinite(v) else str(v)) for k, v in metrics.items()}
        self.run.log(clean, step=step)

    def log_config(self, config: dict[str, Any]) -> None:
        self.run.config.update(config, allow_val_change=True)

    def close(self) -> None:
        self.run.finish()


@dataclass
class WandbSettings:
    """The reference's keys, under ``exp_manager``."""

    create_wandb_logger: bool = False
    """Log to Weights & Biases."""
    wandb_logger_kwargs: dict[str, Any] = field(default_factory=dict)
    """``project``, ``name``, ``entity``, ``group``, ``tags``, ``notes``, ``id``, ``job_type``, ``resume``
    (passed to ``wandb.init``), ``save_dir``, ``offline`` (default true)."""

    def __post_init__(self) -> None:
        from sft_core import SftError

        unknown = sorted(set(self.wandb_logger_kwargs) - {*INIT_KEYS, "save_dir", "offline"})
        if unknown:
            raise SftError(f"unknown config key 'exp_manager.wandb_logger_kwargs.{unknown[0]}' (known: "
                           f"{', '.join((*INIT_KEYS, 'save_dir', 'offline'))})")


class WandbLoggerFactory:
    name = "wandb"

    def create(self, run: Any) -> WandbLogger | None:
        settings = run.config.section(WandbSettings)
        if not settings.create_wandb_logger:
            return None
        return WandbLogger(run.run_dir, dict(settings.wandb_logger_kwargs))


@hookimpl
def sft_register_config_sections(register):
    from sft_trainer.config.sections import ConfigSection

    register(ConfigSection("exp_manager", WandbSettings))


@hookimpl
def sft_register_loggers(register):
    register(WandbLoggerFactory())
