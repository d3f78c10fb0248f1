"""Training checkpoints of a mixture-of-experts model (dist/, format 2) under expert parallelism, in
one torchrun launch of two gloo processes (moe_checkpoint_worker.py): a save at EP=2 resumes at
EP=2 bit for bit, an EP change is refused in one line, experts are saved in their global shape, and
an EP=1 MoE checkpoint reshards to TP=2 (sequence-parallel)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("moe_checkpoint_worker.py")


def step3(out: Path, phase: str) -> Path:
    (found,) = (out / phase / "checkpoints").glob("megatron_gpt_sft--step=000003-*")
    return found


@pytest.fixture(scope="module")
def launched(tiny_nemo, tmp_path_factory):
    from sft_data import load_tokenizer
    from sft_model import extract_tokenizer
    from sft_model.random_init import init_nemo

    out = tmp_path_factory.mktemp("moe-checkpoints")
    tok = extract_tokenizer(tiny_nemo, out / "tok")
    base = init_nemo("mixtral", tok, load_tokenizer(tok.files[0]).vocab_size, out / "moe.nemo", num_layers=2,
                     hidden_size=64, num_attention_heads=4, num_query_groups=2, encoder_seq_length=64)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                             "MASTER_PORT")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(port), str(WORKER), str(out), str(base)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**env, "OMP_NUM_THREADS": "1"}, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((out / "results.json").read_text()), out


def test_expert_parallel_checkpoint_resumes_bit_identically(launched):
    results, _ = launched
    uninterrupted, resumed = results["ep2"]["losses"], results["ep2-resumed"]["losses"]
    assert sorted(resumed, key=int) == ["4", "5", "6"]
    for step, (loss, aux) in resumed.items():
        assert (loss, aux) == tuple(uninterrupted[step])  # loss and the routers' aux loss, bit for bit
    for step, (loss, aux) in results["ep1"]["losses"].items():  # EP splits the experts, not the maths
        assert abs(loss - uninterrupted[step][0]) <= 1e-5 and abs(aux - uninterrupted[step][1]) <= 1e-5


def test_experts_are_saved_in_global_shape_with_the_layout(launched):
    from sft_model.nemo.untrusted import read_metadata
    from sft_trainer.checkpoint_inspect import describe_checkpoint, describe_lines
    from sft_trainer.checkpoint_verify import verify

    _, out = launched
    path = step3(out, "ep2")
    assert verify(path) is None
    assert json.loads((path / "state.json").read_text())["ep_size"] == 2
    meta = read_metadata((path / "dist" / ".metadata").read_bytes(), path)
    fc1 = meta.state_dict_metadata["model.decoder.layers.mlp.experts.experts.linear_fc1.weight"]
    assert tuple(fc1.size)[:2] == (2, 4)  # [layers, all 4 experts], each EP rank wrote its two
    assert {p.name for p in (path / "dist").glob("__*_0.distcp")} == {"__0_0.distcp", "__1_0.distcp"}
    assert "optimizer.state.exp_avg.model.decoder.layers.mlp.experts.experts.linear_fc1.weight" in (
        meta.state_dict_metadata)
    info = describe_checkpoint(path)
    assert info["topology"]["expert_model_parallel_size"] == 2
    assert "TP=1 PP=1 DP=2 EP=2 (2 processes); resumes at any TP, PP and DP with this EP" in "\n".join(describe_lines(info))


def test_a_change_of_expert_parallel_size_is_refused_in_one_line(launched):
    results, out = launched
    error = results["ep1-refused"]["error"]
    assert error == (f"{step3(out, 'ep2')} was saved with model.expert_model_parallel_size=2; this run uses 1, and "
                     "the optimizer state does not reshard across expert-parallel sizes: resume with "
                     "model.expert_model_parallel_size=2")
    assert not (out / "ep1-refused" / "metrics.jsonl").exists() or "train/loss" not in (
        out / "ep1-refused" / "metrics.jsonl").read_text()


def test_a_moe_checkpoint_reshards_to_tensor_parallel(launched):
    """Saved at EP=1, DP=2; resumed at TP=2, where MoE layers train sequence-parallel."""
    results, _ = launched
    want = results["ep1"]["losses"]
    for step, (loss, aux) in results["tp2-resumed"]["losses"].items():
        assert int(step) > 3
        assert abs(loss - want[step][0]) <= 1e-5 and abs(aux - want[step][1]) <= 1e-5


@pytest.mark.parametrize(("ep_size", "problem"), [(3, "ep_size 3 does not divide dp_size 2"),
                                                  ("2", "ep_size '2' does not divide dp_size 2"),
                                                  (0, "ep_size 0 does not divide dp_size 2")])
def test_a_bad_ep_size_in_state_json_does_not_verify(launched, tmp_path, ep_size, problem):
    from sft_trainer.checkpoint_verify import verify

    _, out = launched
    path = tmp_path / step3(out, "ep2").name
    shutil.copytree(step3(out, "ep2"), path)
    meta = json.loads((path / "state.json").read_text())
    (path / "state.json").write_text(json.dumps({**meta, "ep_size": ep_size}))
    assert verify(path) == f"state.json: {problem}"
