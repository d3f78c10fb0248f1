"""Every newer family under TP=2 (with and without sequence parallelism) and PP=2 (EP=2 for experts)
on two gloo processes equals one process.

One pair of processes checks all families in turn (megatron-core costs ~8 s per process to import).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import hf_model

FAMILIES = ["qwen3", "mistral-window", "phi3", "gemma2", "gemma3", "mixtral", "qwen3_moe"]
MOE = ["mixtral", "qwen3_moe"]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("family-dist")
    dirs = []
    for kind in FAMILIES:
        hf_model(kind, tied=kind == "qwen3").save_pretrained(out / kind)
        dirs.append(str(out / kind))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    worker = Path(__file__).with_name("family_dist_worker.py")
    procs = []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, str(worker), str(out), *dirs], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    logs = [p.communicate(timeout=600)[0] for p in procs]
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0, log[-3000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.mark.parametrize("kind", FAMILIES)
def test_tensor_parallel_matches_single_process(results, kind):
    for rank in results:
        r = rank[kind]
        assert r["tp2_logits_diff"] <= 1e-5
        assert abs(r["tp2_loss"] - r["tp1_loss"]) <= 1e-5
        assert abs(r["tp2_grad"] - r["tp1_grad"]) <= 1e-5 * max(1.0, r["tp1_grad"])


@pytest.mark.parametrize("kind", [k for k in FAMILIES if k not in MOE])
def test_sequence_parallel_matches_single_process(results, kind):
    """model.sequence_parallel on a dense family at TP=2 (MoE runs are sequence-parallel above): every
    norm on the local spec is one that takes it (Qwen3's and Gemma 3's q/k norms included), its
    weights marked for megatron's tensor-parallel gradient sum."""
    for rank in results:
        r = rank[kind]
        assert r["sp_norms_marked"]
        assert r["sp_logits_diff"] <= 1e-5
        assert abs(r["sp_loss"] - r["tp1_loss"]) <= 1e-5
        assert abs(r["sp_grad"] - r["tp1_grad"]) <= 1e-5 * max(1.0, r["tp1_grad"])


@pytest.mark.parametrize("kind", FAMILIES)
def test_pipeline_parallel_matches_single_process(results, kind):
    for rank in results:
        r = rank[kind]
        assert r["pp2_layers"] == r["layers"] // 2  # each stage built only its half of the layers
        assert abs(r["pp2_loss"] - r["tp1_loss"]) <= 1e-5


@pytest.mark.parametrize("kind", MOE)
def test_expert_parallel_matches_single_process(results, kind):
    for rank in results:
        r = rank[kind]
        assert r["ep2_local_experts"] == 2  # each rank holds half of the 4 experts
        assert r["ep2_logits_diff"] <= 1e-5
        assert abs(r["ep2_loss"] - r["tp1_loss"]) <= 1e-5
        assert abs(r["ep2_grad"] - r["tp1_grad"]) <= 1e-5 * max(1.0, r["tp1_grad"])
