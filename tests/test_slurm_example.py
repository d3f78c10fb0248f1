"""examples/slurm/sft_train.sbatch under stand-ins for SLURM's srun and scontrol and for uv: each
node's task runs torchrun with its own node rank, the first node's address as the rendezvous, the
user's config and overrides, and a trainer.max_time that the config loader accepts."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "examples/slurm/sft_train.sbatch"

# srun: runs its command once per node (SLURM_NODEID 0..SLURM_NNODES-1), dropping its own options
SRUN = """#!/bin/bash
while [[ "$1" == --* ]]; do shift; done
for node in $(seq 0 $((SLURM_NNODES - 1))); do SLURM_NODEID=$node "$@" || exit 1; done
"""
SCONTROL = """#!/bin/bash
[[ "$1 $2" == "show hostnames" ]] && printf 'gpu-node-07\\ngpu-node-08\\n'
"""
UV = """#!/bin/bash
printf '%s\\n' "$@" > "$RECORD/node$SLURM_NODEID"
"""


def test_the_slurm_script_starts_one_torchrun_per_node(tmp_path):
    from sft_trainer.config import load_config

    bin_dir, record = tmp_path / "bin", tmp_path / "record"
    bin_dir.mkdir()
    record.mkdir()
    for name, text in (("srun", SRUN), ("scontrol", SCONTROL), ("uv", UV)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    inherited = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT", "MAX_TIME")}
    env = {**inherited, "PATH": f"{bin_dir}:{os.environ['PATH']}", "RECORD": str(record),
           "SLURM_JOB_NODELIST": "gpu-node-[07-08]", "SLURM_NNODES": "2", "SLURM_GPUS_ON_NODE": "4"}
    overrides = ["model.tensor_model_parallel_size=4", "model.sequence_parallel=true"]
    run = subprocess.run(["bash", str(SCRIPT), "examples/quickstart.yaml", *overrides], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    for node in (0, 1):
        argv = (record / f"node{node}").read_text().splitlines()
        assert argv == ["run", "--frozen", "torchrun", "--nnodes", "2", "--nproc-per-node", "4", "--node-rank",
                        str(node), "--master-addr", "gpu-node-07", "--master-port", "29500", "-m", "sft_cli", "train",
                        "--config", "examples/quickstart.yaml", "trainer.max_time=00:03:50:00", *overrides]
    cfg = load_config(REPO / "examples/quickstart.yaml", argv[argv.index("--config") + 2:])
    assert cfg.trainer.max_time_seconds == 3 * 3600 + 50 * 60
    assert (cfg.model.tensor_model_parallel_size, cfg.model.sequence_parallel) == (4, True)
    missing = subprocess.run(["bash", str(SCRIPT)], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert missing.returncode != 0 and "usage: sbatch examples/slurm/sft_train.sbatch CONFIG.yaml" in missing.stderr
