"""Benchmark: how fast the CLI answers, as whole processes (what a user waits for).

    uv run python bench/startup.py [--runs 7]

Prints one JSON object: the median (and min/max) wall time of ``sft --help``, ``sft plugins`` and
``sft prepare`` on a 10-line JSONL file (SentencePiece tokenizer trained beforehand, not timed), each
run as a fresh process of the workspace's ``sft`` entry point, plus which heavy modules (torch,
megatron, transformers, matplotlib) each command imported (``-X importtime``). Goals: ``--help``
under 0.5 s, ``prepare`` of a small file under 1.5 s on the 2-core development machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "megatron", "transformers", "matplotlib", "wandb", "tensorboard")


def wall_times(argv: list[str], runs: int, env: dict[str, str]) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, env=env, cwd=ROOT)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.decode()[-500:]}")
    return times


def heavy_imports(argv: list[str], env: dict[str, str]) -> list[str]:
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "sft_cli", *argv[1:]], capture_output=True,
                          text=True, env=env, cwd=ROOT)
    names = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    return sorted(name for name in names if name.split(".")[0] in HEAVY and "." not in name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    sft = str(Path(sys.executable).with_name("sft"))
    env = {**os.environ, "COLUMNS": "120"}
    with tempfile.TemporaryDirectory() as work:
        work_dir = Path(work)
        from sft_data.tokenizers.training import train_sentencepiece

        tok = train_sentencepiece([ROOT / "examples/data/corpus.txt"], work_dir / "tok.model", vocab_size=600)
        lines = (ROOT / "examples/data/train.jsonl").read_text(encoding="utf-8").splitlines()[:10]
        data = work_dir / "ten.jsonl"
        data.write_text("\n".join(lines) + "\n", encoding="utf-8")
        commands = {
            "sft --help": [sft, "--help"],
            "sft plugins": [sft, "plugins"],
            "sft prepare (10 lines)": [sft, "prepare", str(data), "--tokenizer", str(tok), "--output",
                                       str(work_dir / "out"), "--overwrite"],
        }
        results = {}
        for name, argv in commands.items():
            times = wall_times(argv, args.runs, env)
            results[name] = {"median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3),
                             "max_s": round(max(times), 3), "heavy_imports": heavy_imports(argv, env)}
    print(json.dumps({"machine": {"cpus": os.cpu_count(), "python": platform.python_version()}, "runs": args.runs,
                      "goals_s": {"sft --help": 0.5, "sft prepare (10 lines)": 1.5}, "commands": results}, indent=2))


if __name__ == "__main__":
    main()
