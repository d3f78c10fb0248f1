"""sft plugin: metrics as TensorBoard scalars, the training config as text.

Registered through the ``sft`` entry point ``tensorboard``; enabled by
``exp_manager.create_tensorboard_logger`` (true by default, as in the reference) and blocked with
``SFT_DISABLE_PLUGINS=tensorboard``. Event files go to ``<run_dir>/tensorboard``, written with the
``tensorboard`` package's own event writer (no TensorFlow and no torch needed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sft_core import hookimpl

from sft_tensorboard.writer import MissingDependencyError, TensorBoardLogger

__all__ = ["EVENTS_DIR", "MissingDependencyError", "TensorBoardLogger", "TensorBoardLoggerFactory"]

EVENTS_DIR = "tensorboard"


@dataclass
class TensorBoardSettings:
    """The reference's key, under ``exp_manager``."""

    create_tensorboard_logger: bool = True
    """Write TensorBoard event files under ``<run_dir>/tensorboard``."""


class TensorBoardLoggerFactory:
    name = "tensorboard"

    def create(self, run: Any) -> TensorBoardLogger | None:
        if not run.config.section(TensorBoardSettings).create_tensorboard_logger:
            return None
        return TensorBoardLogger(run.run_dir / EVENTS_DIR)


@hookimpl
def sft_register_config_sections(register):
    from sft_trainer.config.sections import ConfigSection

    register(ConfigSection("exp_manager", TensorBoardSettings))


@hookimpl
def sft_register_loggers(register):
    register(TensorBoardLoggerFactory())
