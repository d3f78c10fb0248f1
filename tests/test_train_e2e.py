"""`sft train` as users run it, in subprocesses: learning, exact resume after SIGKILL, SIGTERM,
NaN, and DP/TP/PP runs matching the one-process run."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STEPS = 6

CONFIG = """
trainer:
  precision: 32
  sft:
    max_steps: {steps}
    max_epochs: 10
    val_check_interval: 2
    limit_val_batches: 1
exp_manager:
  explicit_log_dir: {run_dir}
model:
  restore_from_path: {nemo}
  micro_batch_size: 4
  global_batch_size: 8
  optim:
    lr: 2e-3
    sched:
      warmup_steps: 1
      constant_steps: 0
      min_lr: 1e-4
  data:
    train_ds:
      file_path: {train}
      max_seq_length: 64
    validation_ds:
      file_path: {val}
      max_seq_length: 64
"""

# A third-party plugin, installed for the subprocess through an `sft` entry point, that misbehaves
# on request: SIGKILL after a save, SIGTERM during a step, a NaN weight.
PLUGIN = """
import os, signal, torch, pluggy
hookimpl = pluggy.HookimplMarker("sft")
_model = []

@hookimpl
def sft_on_train_start(state, model):
    _model[:] = model

@hookimpl
def sft_on_save(state, path):
    if state.step == int(os.environ.get("CHAOS_KILL_AFTER_SAVE", -1)):
        os.kill(os.getpid(), signal.SIGKILL)

@hookimpl
def sft_on_step_end(state, metrics):
    if state.step == int(os.environ.get("CHAOS_TERM_AT_STEP", -1)):
        os.kill(os.getpid(), signal.SIGTERM)
    if state.step == int(os.environ.get("CHAOS_NAN_AT_STEP", -1)):
        with torch.no_grad():
            next(_model[0].parameters()).fill_(float("nan"))
"""


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    from sft_data import load_tokenizer
    from sft_data.tokenizers.training import train_sentencepiece
    from sft_model.random_init import init_nemo

    tok_path = train_sentencepiece([REPO / "examples/data/corpus.txt"], root / "tok.model", vocab_size=600)
    tok = load_tokenizer(tok_path)
    nemo = init_nemo("llama", tok_path, tok.vocab_size, root / "tiny.nemo", num_layers=2, hidden_size=64,
                     num_attention_heads=4, num_query_groups=2, ffn_hidden_size=128, encoder_seq_length=64)
    plugin_dir = root / "plugins"
    plugin_dir.mkdir()
    (plugin_dir / "sft_chaos.py").write_text(textwrap.dedent(PLUGIN))
    info = plugin_dir / "sft_chaos-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sft-chaos\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[sft]\nchaos = sft_chaos\n")
    return {"root": root, "nemo": nemo, "plugins": plugin_dir}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train(assets, name: str, *overrides: str, nproc: int = 1, env: dict | None = None, steps: int = STEPS):
    run_dir = assets["root"] / name
    cfg = assets["root"] / f"{name}.yaml"
    cfg.write_text(CONFIG.format(steps=steps, run_dir=run_dir, nemo=assets["nemo"],
                                 train=REPO / "examples/data/train.jsonl", val=REPO / "examples/data/val.jsonl"))
    if nproc == 1:
        cmd = [sys.executable, "-m", "sft_cli", "train", "--config", str(cfg), *overrides]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--master-addr",
               "127.0.0.1", "--master-port", str(_port()), "-m", "sft_cli", "train", "--config", str(cfg), *overrides]
    # this test process may hold a one-process world of its own: the child must not join it
    inherited = {k: v for k, v in os.environ.items()
                 if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    full_env = {**inherited, "PYTHONPATH": str(assets["plugins"]), "OMP_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=600)
    return proc, run_dir


def losses(run_dir: Path) -> dict[int, float]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["train/loss"] for r in records if "train/loss" in r}


def val_losses(run_dir: Path) -> dict[int, float]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["validation/loss"] for r in records if "validation/loss" in r}


@pytest.fixture(scope="module")
def baseline(assets):
    proc, run_dir = train(assets, "baseline")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def test_training_lowers_validation_loss_and_exports_nemo(baseline):
    val = val_losses(baseline)
    assert sorted(val) == [2, 4, 6]
    assert val[6] < val[2]
    assert sorted(losses(baseline)) == list(range(1, STEPS + 1))
    from sft_model import read_config

    cfg = read_config(baseline / "checkpoints" / "megatron_gpt_sft.nemo")
    assert cfg.data["train_ds"]["prompt_template"] == "{input} {output}"
    assert cfg.data["chat_prompt_tokens"] == {}
    assert cfg.extra["optim"]["lr"] == 2e-3
    metrics = [json.loads(line) for line in (baseline / "metrics.jsonl").read_text().splitlines()]
    step = next(m for m in metrics if "train/loss" in m)
    assert {"train/lr", "train/grad_norm", "train/tokens_per_sec", "train/trained_tokens",
            "train/consumed_samples", "train/step_time", "epoch"} <= set(step)


def test_sigkill_then_resume_is_bit_identical(assets, baseline):
    proc, run_dir = train(assets, "killed", env={"CHAOS_KILL_AFTER_SAVE": "4"})
    assert proc.returncode == -signal.SIGKILL
    assert max(losses(run_dir)) == 4
    # an interrupted later save leaves a .tmp- directory: it must not be mistaken for a checkpoint
    partial = run_dir / "checkpoints" / ".tmp-megatron_gpt_sft--step=000006-consumed_samples=48-epoch=0"
    partial.mkdir()
    (partial / "dist").mkdir()
    (partial / "dist" / "__0_0.distcp").write_bytes(b"half a file")
    proc, _ = train(assets, "killed")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming from megatron_gpt_sft--step=000004" in proc.stdout
    assert not partial.exists()
    resumed, reference = losses(run_dir), losses(baseline)
    for step in (5, 6):
        assert resumed[step] == reference[step], (step, resumed[step], reference[step])


def test_sigterm_saves_and_exits_cleanly(assets):
    proc, run_dir = train(assets, "terminated", env={"CHAOS_TERM_AT_STEP": "3"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "finished at step 3 (SIGTERM)" in proc.stdout
    names = [p.name for p in (run_dir / "checkpoints").iterdir()]
    assert any(n.startswith("megatron_gpt_sft--step=000003") for n in names)
    assert "megatron_gpt_sft.nemo" not in names


def test_nan_loss_stops_with_a_clear_message(assets):
    proc, run_dir = train(assets, "nan", env={"CHAOS_NAN_AT_STEP": "2"})
    assert proc.returncode == 1
    assert "Error: the loss is nan at step 3; stopping" in proc.stderr
    assert "Traceback" not in proc.stderr
    names = [p.name for p in (run_dir / "checkpoints").iterdir()]
    assert any(n.startswith("megatron_gpt_sft--step=000002") for n in names)  # the last good one stays


def test_unknown_key_is_named(assets):
    proc, _ = train(assets, "typo", "model.optim.lrr=1e-3")
    assert proc.returncode == 1
    assert "unknown config key 'model.optim.lrr'; did you mean 'model.optim.lr'?" in proc.stderr


@pytest.mark.parametrize("layout", ["dp2", "tp2", "pp2"])
def test_parallel_layouts_match_one_process(assets, baseline, layout):
    overrides = {"dp2": [], "tp2": ["model.tensor_model_parallel_size=2"],
                 "pp2": ["model.pipeline_model_parallel_size=2"]}[layout]
    proc, run_dir = train(assets, layout, *overrides, "exp_manager.create_checkpoint_callback=false",
                          "exp_manager.checkpoint_callback_params.save_nemo_on_train_end=false", nproc=2, steps=STEPS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got, want = losses(run_dir), losses(baseline)
    assert sorted(got) == sorted(want)
    for step in want:
        assert abs(got[step] - want[step]) <= 1e-4, (layout, step, got[step], want[step])
