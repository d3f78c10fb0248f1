"""``sft report RUN_DIR [--output]`` as a user runs it."""

from __future__ import annotations

import json
import struct


def test_report_command_prints_summary_and_writes_png(run, tmp_path):
    records = [{"step": s, "train/loss": 3.0 / s, "train/lr": 1e-3, "train/tokens_per_sec": 900.0,
                "train/trained_tokens": 5, "train/step_time": 0.5} for s in range(1, 7)]
    records += [{"step": 3, "validation/loss": 0.75}, {"step": 6, "validation/loss": 0.8}]
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    result = run("report", tmp_path / "run", "--output", tmp_path / "out" / "r.png")
    assert result.exit_code == 0, result.output
    assert "best val loss      0.7500 at step 3" in result.output
    assert "tokens trained     30" in result.output
    data = (tmp_path / "out" / "r.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", data[16:24]) == (1200, 800)
    missing = run("report", tmp_path)
    assert missing.exit_code == 1 and "no metrics.jsonl" in missing.stderr
