"""The logger contract, and loggers as plugins of the run (one event path, one failure policy)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sft_core import hookimpl


class Logger(Protocol):
    def log_metrics(self, step: int, metrics: dict[str, float]) -> None: ...

    def log_config(self, config: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class RunInfo:
    """What a logger factory gets to decide whether and how to log."""

    run_dir: Path
    config: Any
    """The ``TrainConfig``."""
    max_steps: int
    start_step: int = 0


class LoggerFactory(Protocol):
    """Registered through ``sft_register_loggers``. A factory (and its logger) may set
    ``required = True``: then a failure stops the run instead of disabling the logger."""

    name: str

    def create(self, run: RunInfo) -> Logger | None: ...


class LoggerPlugin:
    """A logger registered as a plugin for one run, so the event hooks' dispatcher (and its
    failure policy) serves loggers and event plugins alike."""

    def __init__(self, name: str, logger: Logger, config: dict[str, Any]):
        self.name = f"logger:{name}"
        self.logger = logger
        self.config = config
        self.required = bool(getattr(logger, "required", False))
        """The dispatcher lets a required plugin's failure through instead of disabling it."""

    @hookimpl
    def sft_on_train_start(self, state, model) -> None:
        self.logger.log_config(self.config)

    @hookimpl
    def sft_on_log(self, step: int, metrics: dict[str, float]) -> None:
        self.logger.log_metrics(step, metrics)

    @hookimpl
    def sft_on_train_end(self, state) -> None:
        self.logger.close()
