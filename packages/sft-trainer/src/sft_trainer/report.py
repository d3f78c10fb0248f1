"""Run reports: a summary and a PNG (loss curves, learning rate, throughput) from ``metrics.jsonl``.

``sft report RUN_DIR`` calls ``write_report``, and so does ``train()`` at the end of a run. Only
matplotlib's Agg backend is used, so no display is ever needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sft_core import SftError

from sft_trainer.loggers.jsonl import METRICS_FILE, read_metrics

REPORT_FILE = "report.png"
FIGSIZE = (12.0, 8.0)
DPI = 100
"""The PNG is FIGSIZE × DPI pixels (1200 × 800)."""


@dataclass(frozen=True)
class RunSummary:
    steps: int
    """The last optimizer step in the file."""
    best_val_loss: float | None
    best_val_step: int | None
    trained_tokens: int
    """Sum of ``train/trained_tokens`` (loss tokens) over the logged steps: exact when every step is
    logged (``log_every_n_steps: 1``, the default)."""
    wall_time_s: float
    """Sum of ``train/step_time`` over the logged steps: the time spent in optimizer steps
    (validation and checkpointing not included; the file holds no clock)."""
    last_train_loss: float | None

    def lines(self) -> list[str]:
        best = ("none" if self.best_val_loss is None
                else f"{self.best_val_loss:.4f} at step {self.best_val_step}")
        last = "none" if self.last_train_loss is None else f"{self.last_train_loss:.4f}"
        return [f"steps              {self.steps}",
                f"best val loss      {best}",
                f"last train loss    {last}",
                f"tokens trained     {self.trained_tokens:,}",
                f"wall time (steps)  {self.wall_time_s:.1f} s"]


def _number(value: Any) -> float | None:
    # The JSONL logger writes NaN/Inf as strings; they are not plotted or summed.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _series(records: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    steps, values = [], []
    for record in records:
        value = _number(record.get(key))
        if value is not None:
            steps.append(int(record["step"]))
            values.append(value)
    return steps, values


def latest_per_step(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One training and one validation record per step, the last written winning: a run resumed
    from a checkpoint logs the steps after that checkpoint again."""
    by_step: dict[tuple[int, bool], dict[str, Any]] = {}
    for record in records:
        by_step[(int(record["step"]), "validation/loss" in record)] = record
    return [by_step[k] for k in sorted(by_step)]


def summarize(records: list[dict[str, Any]]) -> RunSummary:
    """The summary numbers of one metrics file (see ``latest_per_step`` for resumed runs)."""
    records = latest_per_step(records)
    val_steps, val_losses = _series(records, "validation/loss")
    best = min(range(len(val_losses)), key=val_losses.__getitem__) if val_losses else None
    _, tokens = _series(records, "train/trained_tokens")
    _, times = _series(records, "train/step_time")
    _, train_losses = _series(records, "train/loss")
    return RunSummary(
        steps=max((int(r["step"]) for r in records), default=0),
        best_val_loss=None if best is None else val_losses[best],
        best_val_step=None if best is None else val_steps[best],
        trained_tokens=int(sum(tokens)), wall_time_s=sum(times),
        last_train_loss=train_losses[-1] if train_losses else None,
    )


def render(records: list[dict[str, Any]], summary: RunSummary, output: Path, title: str = "") -> Path:
    """Draw the four panels (loss, lr, tokens/s, summary) into ``output`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")  # never a display, also when a user's matplotlibrc asks for one
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=FIGSIZE, dpi=DPI)
    try:
        loss, lr, speed, text = axes.flat
        for key, label in (("train/loss", "train"), ("validation/loss", "validation")):
            steps, values = _series(records, key)
            if steps:
                loss.plot(steps, values, label=label, marker="o" if label == "validation" else None)
        if summary.best_val_step is not None:
            loss.axvline(summary.best_val_step, color="grey", linestyle=":", label="best validation")
        loss.set(title="loss", xlabel="step")
        loss.legend()
        for ax, key, name in ((lr, "train/lr", "learning rate"), (speed, "train/tokens_per_sec", "tokens/s")):
            steps, values = _series(records, key)
            ax.plot(steps, values)
            ax.set(title=name, xlabel="step")
        text.axis("off")
        text.text(0.02, 0.95, "\n".join(summary.lines()), family="monospace", va="top", fontsize=12,
                  transform=text.transAxes)
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        output.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(output, format="png", dpi=DPI)
    finally:
        plt.close(fig)
    return output


def write_report(run_dir: str | Path, output: str | Path | None = None) -> tuple[Path, RunSummary]:
    """Read ``RUN_DIR/metrics.jsonl``; write the PNG (default ``RUN_DIR/report.png``)."""
    run_dir = Path(run_dir)
    metrics = run_dir / METRICS_FILE
    if not metrics.is_file():
        raise SftError(f"{run_dir}: no {METRICS_FILE} here; is it a training run directory?")
    records = latest_per_step([r for r in read_metrics(metrics) if "step" in r])
    if not records:
        raise SftError(f"{metrics}: no metrics recorded yet")
    summary = summarize(records)
    path = render(records, summary, Path(output) if output else run_dir / REPORT_FILE, title=run_dir.name)
    return path, summary
