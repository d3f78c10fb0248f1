"""The logger contract and a dispatcher that survives a broken logger."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


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
    """Registered through ``sft_register_loggers``."""

    name: str

    def create(self, run: RunInfo) -> Logger | None: ...


class LoggerSet:
    """Sends every call to every logger; a logger that raises is reported once and disabled,
    except one marked ``required`` (the run's own metrics.jsonl), whose failure stops the run."""

    def __init__(self, loggers: dict[str, Logger], stream=None):
        self.loggers = dict(loggers)
        self.stream = stream or sys.stderr
        self.disabled: dict[str, str] = {}

    def _each(self, method: str, *args: Any, fatal: bool = True) -> None:
        for name, logger in list(self.loggers.items()):
            try:
                getattr(logger, method)(*args)
            except Exception as exc:
                if fatal and getattr(logger, "required", False):
                    raise
                self.disabled[name] = f"{type(exc).__name__}: {exc}"
                del self.loggers[name]
                print(f"warning: logger {name!r} failed ({self.disabled[name]}); it is disabled, "
                      f"training goes on", file=self.stream)

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        self._each("log_metrics", step, metrics)

    def log_config(self, config: dict[str, Any]) -> None:
        self._each("log_config", config)

    def close(self) -> None:
        # also called while an error is on its way out: closing must not replace it
        self._each("close", fatal=False)
