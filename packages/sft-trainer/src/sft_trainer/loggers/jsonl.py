"""``metrics.jsonl``: one JSON object per logged step, always written in the run directory."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"


def _clean(value: Any) -> Any:
    # JSON has no NaN/Infinity; write them as strings so the file stays valid JSON.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class JsonlLogger:
    def __init__(self, path: Path):
        self.path = path
        self._file = path.open("a", encoding="utf-8")

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        record = {"step": step, **{k: _clean(v) for k, v in metrics.items()}}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def log_config(self, config: dict[str, Any]) -> None:
        """Nothing: the trainer writes config.yaml itself, beside this file."""

    def close(self) -> None:
        self._file.close()


class JsonlLoggerFactory:
    name = "jsonl"

    def create(self, run: Any) -> JsonlLogger:
        run.run_dir.mkdir(parents=True, exist_ok=True)
        return JsonlLogger(run.run_dir / METRICS_FILE)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl file (for reports and tests)."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
