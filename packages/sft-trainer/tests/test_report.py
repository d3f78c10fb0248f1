"""Run reports: the PNG is a valid image of the expected size; the summary matches the metrics file."""

from __future__ import annotations

import json
import struct

import pytest
from sft_trainer.report import DPI, FIGSIZE, summarize, write_report


def metrics_file(run_dir):
    """Ten steps, validation every 4 (best at step 8), a NaN step, and steps 9-10 logged twice (resume)."""
    records = []
    for step in range(1, 11):
        records.append({"step": step, "train/loss": 3.0 / step, "train/lr": 1e-3 * step,
                        "train/tokens_per_sec": 1000.0 + step, "train/trained_tokens": 10 * step,
                        "train/step_time": 0.5, "epoch": 0})
        if step % 4 == 0:
            records.append({"step": step, "validation/loss": {4: 2.0, 8: 1.25}[step]})
    records[4]["train/loss"] = "nan"  # step 4, as the JSONL logger writes a NaN
    records += [{**records[-2], "train/trained_tokens": 100}, {**records[-1], "train/trained_tokens": 100}]
    records.append({"step": 10, "validation/loss": 1.5})
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return records


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_report_png_and_summary(tmp_path):
    metrics_file(tmp_path / "run")
    path, summary = write_report(tmp_path / "run")
    assert path == tmp_path / "run" / "report.png"
    assert png_size(path) == (int(FIGSIZE[0] * DPI), int(FIGSIZE[1] * DPI))
    assert summary.steps == 10
    assert (summary.best_val_loss, summary.best_val_step) == (1.25, 8)
    # Steps 1-8 once each, then 9 and 10 as re-logged after the resume (100 tokens each).
    assert summary.trained_tokens == sum(10 * s for s in range(1, 9)) + 200
    assert summary.wall_time_s == pytest.approx(5.0)
    assert summary.last_train_loss == pytest.approx(0.3)
    assert "1.2500 at step 8" in "\n".join(summary.lines())


def test_summary_without_validation_and_missing_file(tmp_path):
    from sft_core import SftError

    summary = summarize([{"step": 1, "train/loss": 2.0, "train/trained_tokens": 7, "train/step_time": 0.25}])
    assert (summary.best_val_loss, summary.best_val_step, summary.trained_tokens) == (None, None, 7)
    with pytest.raises(SftError, match=r"no metrics\.jsonl"):
        write_report(tmp_path)
