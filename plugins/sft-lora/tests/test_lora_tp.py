"""LoRA under tensor parallelism: TP=2 training gives TP=1's losses, and its adapter .nemo loads and
merges at TP=1 into a model with the adapter model's logits.

TP=1 trains in this process; TP=2 runs `sft train` under torchrun (two processes), as a user would.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[3]
STEPS = 4
# adapter_dropout 0 (the default, stated anyway): dropout masks would differ between layouts
SETTINGS = [
    "model.peft.peft_scheme=lora", "model.peft.lora_tuning.target_modules=[all]",
    "model.peft.lora_tuning.adapter_dim=4", "model.peft.lora_tuning.alpha=16",
    "model.peft.lora_tuning.adapter_dropout=0.0",
    "model.data.train_ds.max_seq_length=64", "model.data.validation_ds.max_seq_length=64",
    "trainer.precision=32", "model.micro_batch_size=4", "model.global_batch_size=4",
    f"trainer.sft.max_steps={STEPS}", "trainer.sft.val_check_interval=100", "trainer.sft.limit_val_batches=1",
    "model.optim.lr=1e-2", "model.optim.sched.warmup_steps=0", "model.optim.sched.constant_steps=0",
    "exp_manager.create_tensorboard_logger=false", "exp_manager.create_checkpoint_callback=false",
    f"model.data.train_ds.file_path={REPO / 'examples/data/train.jsonl'}",
    f"model.data.validation_ds.file_path={REPO / 'examples/data/val.jsonl'}",
]


@pytest.fixture(scope="module")
def nemo(tiny_nemo) -> Path:
    """The shared tiny Llama (4 heads, 2 query groups: both split evenly over TP=2)."""
    return tiny_nemo

def losses(run_dir: Path) -> dict[int, float]:
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["train/loss"] for r in lines if "train/loss" in r}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tp1(nemo, tp2_launched, tmp_path_factory):  # the TP=2 run starts first and overlaps with this one
    from sft_core import get_plugin_manager
    from sft_trainer.config.loading import build_config
    from sft_trainer.run import train

    run_dir = tmp_path_factory.mktemp("tp1") / "run"
    cfg = build_config({}, [f"model.restore_from_path={nemo}", f"exp_manager.explicit_log_dir={run_dir}", *SETTINGS])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = train(cfg, get_plugin_manager())
    result.stdout = out.getvalue()
    return result


@pytest.fixture(scope="module")
def tp2_launched(nemo, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("tp2") / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(free_port()), "-m", "sft_cli", "train", f"model.restore_from_path={nemo}",
           f"exp_manager.explicit_log_dir={run_dir}", "model.tensor_model_parallel_size=2", *SETTINGS]
    # this test process holds a one-process world of its own (the TP=1 run): the children must not join it
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**env, "OMP_NUM_THREADS": "1"})
    yield proc, run_dir
    if proc.poll() is None:  # a failure elsewhere: do not leave the workers behind
        proc.kill()
        proc.communicate()


@pytest.fixture(scope="module")
def tp2(tp2_launched):
    proc, run_dir = tp2_launched
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    return run_dir, stdout


def test_tp2_lora_losses_match_tp1(tp1, tp2):
    tp2, tp2_stdout = tp2
    want, got = losses(tp1.run_dir), losses(tp2)
    # the whole model's trainable count, not rank 0's share of the sharded A/B matrices
    count = [line for line in tp2_stdout.splitlines() if line.startswith("PEFT lora:")]
    assert count and count[0] in tp1.stdout
    assert sorted(got) == sorted(want) == list(range(1, STEPS + 1))
    for step in want:
        assert abs(got[step] - want[step]) <= 1e-4, (step, got[step], want[step])
    assert want[STEPS] < want[1]  # the adapters did learn: the comparison is not of a frozen model


def test_tp2_adapter_merges_at_tp1(nemo, tp1, tp2, tmp_path):
    tp2, _ = tp2
    from sft_lora.merge import load_with_adapter, merge_lora
    from sft_model import compute_logits, load_nemo

    adapter = tp2 / "checkpoints" / "megatron_gpt_sft.nemo"
    assert adapter.is_file(), sorted(p.name for p in (tp2 / "checkpoints").iterdir())
    tokens = torch.randint(0, 600, (2, 32), generator=torch.Generator().manual_seed(0))
    adapted, _ = load_with_adapter(nemo, adapter)  # a TP=2 adapter, loaded at TP=1
    want = compute_logits(adapted, tokens)
    merged = compute_logits(load_nemo(merge_lora(nemo, adapter, tmp_path / "merged.nemo")), tokens)
    assert (want - merged).abs().max() <= 1e-5
    # and the TP=2 adapter is, up to float reassociation, the one TP=1 trained
    same_at_tp1, _ = load_with_adapter(nemo, tp1.nemo_path)
    assert (compute_logits(same_at_tp1, tokens) - want).abs().max() <= 1e-3
    assert (compute_logits(load_nemo(nemo), tokens) - want).abs().max() > 1e-3
