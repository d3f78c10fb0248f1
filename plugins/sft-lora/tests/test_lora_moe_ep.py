"""LoRA on a mixture-of-experts model under expert parallelism: `sft train` on two processes with
model.expert_model_parallel_size=2 (each holds half of the experts and their adapters) gives the
one-process run's losses, and its adapter .nemo merges at EP=1 into base + adapter."""

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
STEPS = 3
SETTINGS = [
    "model.peft.peft_scheme=lora", "model.peft.lora_tuning.target_modules=[all]",
    "model.peft.lora_tuning.adapter_dim=4", "model.peft.lora_tuning.alpha=8", "model.moe_aux_loss_coeff=0.1",
    "model.data.train_ds.max_seq_length=64", "model.data.validation_ds.max_seq_length=64",
    "trainer.precision=32", "model.micro_batch_size=2", "model.global_batch_size=4",
    f"trainer.sft.max_steps={STEPS}", "trainer.sft.val_check_interval=100", "trainer.sft.limit_val_batches=1",
    "model.optim.lr=2e-2", "model.optim.sched.warmup_steps=0", "model.optim.sched.constant_steps=0",
    "exp_manager.create_tensorboard_logger=false", "exp_manager.create_checkpoint_callback=false",
    f"model.data.train_ds.file_path={REPO / 'examples/data/train.jsonl'}",
    f"model.data.validation_ds.file_path={REPO / 'examples/data/val.jsonl'}",
]


@pytest.fixture(scope="module")
def base(tiny_nemo, tmp_path_factory) -> Path:
    from sft_data import load_tokenizer
    from sft_model import extract_tokenizer
    from sft_model.random_init import init_nemo

    work = tmp_path_factory.mktemp("moe-base")
    tok = extract_tokenizer(tiny_nemo, work / "tok")
    return init_nemo("mixtral", tok, load_tokenizer(tok.files[0]).vocab_size, work / "moe.nemo", num_layers=2,
                     hidden_size=64, num_attention_heads=4, num_query_groups=2, encoder_seq_length=64)


def losses(run_dir: Path, key: str = "train/loss") -> dict[int, float]:
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r[key] for r in lines if key in r}


@pytest.fixture(scope="module")
def ep2_launched(base, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ep2") / "run"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(port), "-m", "sft_cli", "train", f"model.restore_from_path={base}",
           f"exp_manager.explicit_log_dir={run_dir}", "model.expert_model_parallel_size=2", *SETTINGS]
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**env, "OMP_NUM_THREADS": "1"})
    yield proc, run_dir
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


@pytest.fixture(scope="module")
def ep1(base, ep2_launched, tmp_path_factory):  # runs while the EP=2 processes work
    from sft_core import get_plugin_manager
    from sft_trainer.config.loading import build_config
    from sft_trainer.run import train

    run_dir = tmp_path_factory.mktemp("ep1") / "run"
    cfg = build_config({}, [f"model.restore_from_path={base}", f"exp_manager.explicit_log_dir={run_dir}", *SETTINGS])
    with contextlib.redirect_stdout(io.StringIO()):
        return train(cfg, get_plugin_manager())


@pytest.fixture(scope="module")
def ep2(ep2_launched):
    proc, run_dir = ep2_launched
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    return run_dir


def test_ep2_losses_and_aux_losses_match_one_process(ep1, ep2):
    for key in ("train/loss", "train/moe_aux_loss"):
        want, got = losses(ep1.run_dir, key), losses(ep2, key)
        assert sorted(got) == sorted(want) == list(range(1, STEPS + 1)), key
        for step in want:
            assert abs(got[step] - want[step]) <= 1e-4, (key, step, got[step], want[step])
    assert losses(ep1.run_dir)[STEPS] < losses(ep1.run_dir)[1]  # the adapters learned


def test_ep2_adapter_merges_at_ep1(base, ep1, ep2, tmp_path):
    from sft_lora.merge import load_with_adapter, merge_lora
    from sft_model import compute_logits, load_nemo

    adapter = ep2 / "checkpoints" / "megatron_gpt_sft.nemo"
    tokens = torch.randint(0, 500, (2, 32), generator=torch.Generator().manual_seed(0))
    adapted, _ = load_with_adapter(base, adapter)  # experts' adapters saved by two ranks, loaded by one
    want = compute_logits(adapted, tokens)
    merged = compute_logits(load_nemo(merge_lora(base, adapter, tmp_path / "merged.nemo")), tokens)
    assert (want - merged).abs().max() <= 1e-5
    same_at_ep1, _ = load_with_adapter(base, ep1.nemo_path)
    assert (compute_logits(same_at_ep1, tokens) - want).abs().max() <= 1e-3
    assert (compute_logits(load_nemo(base), tokens) - want).abs().max() > 1e-3
