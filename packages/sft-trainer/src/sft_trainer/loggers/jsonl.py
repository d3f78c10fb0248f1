"""``metrics.jsonl``: one JSON object per logged step, always written in the run directory.

It is the run's own record (the report reads it), so unlike plugin loggers a failure to write it
stops the run (``required``), as one line naming the file and the cause. A resumed run replays
the steps after its checkpoint: on start, lines of later steps (and a line cut short by a kill)
are dropped first, in an atomic rewrite, so each step appears once however often the run was
interrupted.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from sft_trainer.write_errors import as_write_failure, atomic_write_text

METRICS_FILE = "metrics.jsonl"


def _clean(value: Any) -> Any:
    # JSON has no NaN/Infinity; write them as strings so the file stays valid JSON.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class JsonlLogger:
    required = True
    """Its failures stop the run instead of disabling it (see ``LoggerPlugin`` and sft_core.EventDispatcher)."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self._file = path.open("a", encoding="utf-8")
        except OSError as exc:
            raise as_write_failure(exc, path) from None

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        record = {"step": step, **{k: _clean(v) for k, v in metrics.items()}}
        try:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
        except OSError as exc:
            raise as_write_failure(exc, self.path) from None

    def log_config(self, config: dict[str, Any]) -> None:
        """Nothing: the trainer writes config.yaml itself, beside this file."""

    def close(self) -> None:
        try:
            self._file.close()
        except OSError as exc:  # the last buffered bytes could not be written
            raise as_write_failure(exc, self.path) from None


class JsonlLoggerFactory:
    name = "jsonl"
    required = True

    def create(self, run: Any) -> JsonlLogger:
        path = run.run_dir / METRICS_FILE
        try:
            run.run_dir.mkdir(parents=True, exist_ok=True)
            dropped = trim_after(path, run.start_step)
        except OSError as exc:
            raise as_write_failure(exc, path) from None
        if dropped:
            print(f"{path}: dropped {dropped} line(s) after step {run.start_step}; those steps run again")
        return JsonlLogger(path)


def trim_after(path: Path, step: int) -> int:
    """Drop the records of steps after ``step`` and lines that are not JSON records (one a kill cut
    short); rewrites ``path`` atomically when anything changes. Returns the number of lines dropped."""
    if not path.is_file():
        return 0
    raw = path.read_bytes()
    kept, dropped = [], 0
    for line in raw.decode("utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict) or not isinstance(record.get("step"), int) or record["step"] > step:
            dropped += 1
        else:
            kept.append(line)
    text = "".join(line + "\n" for line in kept)
    if text.encode("utf-8") == raw:
        return 0
    atomic_write_text(path, text)
    return dropped


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl file (for reports and tests)."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
