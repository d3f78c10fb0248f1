"""The console logger: a progress bar with loss, tokens/s and ETA, and validation lines."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class ConsoleLogger:
    def __init__(self, max_steps: int, start_step: int = 0, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("step"), MofNCompleteColumn(), BarColumn(), TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=self.console,
        )
        self.task = self.progress.add_task("train", total=max_steps, completed=start_step, status="")
        self.progress.start()

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        if "validation/loss" in metrics:
            self.progress.console.print(f"step {step}: validation loss {metrics['validation/loss']:.4f}")
        if "train/loss" not in metrics:
            return
        status = f"loss {metrics['train/loss']:.4f}  lr {metrics.get('train/lr', 0):.2e}"
        if "train/tokens_per_sec" in metrics:
            status += f"  {metrics['train/tokens_per_sec']:,.0f} tok/s"
        self.progress.update(self.task, completed=step, status=status)

    def log_config(self, config: dict[str, Any]) -> None:
        """Nothing: the config is in the run directory."""

    def close(self) -> None:
        self.progress.stop()


class ConsoleLoggerFactory:
    name = "console"

    def create(self, run: Any) -> ConsoleLogger:
        return ConsoleLogger(run.max_steps, run.start_step)
