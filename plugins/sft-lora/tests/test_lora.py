"""LoRA through the trainer, in this process: only adapters train (base bit-identical), adapter-only
checkpoints and .nemo, exact resume, and `sft merge-lora` (merged logits = base+adapter logits)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pluggy
import pytest
import torch

REPO = Path(__file__).resolve().parents[3]
hookimpl = pluggy.HookimplMarker("sft")
LORA = ["model.peft.peft_scheme=lora", "model.peft.lora_tuning.target_modules=[all]",
        "model.peft.lora_tuning.adapter_dim=4", "model.peft.lora_tuning.alpha=16"]


@pytest.fixture(scope="module")
def nemo(tiny_nemo) -> Path:
    """The shared tiny Llama (4 heads, 2 query groups: both split evenly over TP=2)."""
    return tiny_nemo

def config(nemo, run_dir, *overrides):
    from sft_trainer.config.loading import build_config

    return build_config({}, [
        f"model.restore_from_path={nemo}", f"exp_manager.explicit_log_dir={run_dir}",
        f"model.data.train_ds.file_path={REPO / 'examples/data/train.jsonl'}",
        f"model.data.validation_ds.file_path={REPO / 'examples/data/val.jsonl'}",
        "model.data.train_ds.max_seq_length=64", "model.data.validation_ds.max_seq_length=64",
        "trainer.precision=32", "model.micro_batch_size=4", "model.global_batch_size=4", "trainer.sft.max_steps=4",
        "trainer.sft.val_check_interval=2", "trainer.sft.limit_val_batches=1", "model.optim.lr=1e-2",
        "model.optim.sched.warmup_steps=0", "model.optim.sched.constant_steps=0",
        "exp_manager.create_tensorboard_logger=false", *LORA, *overrides,
    ])


class KeepModel:
    @hookimpl
    def sft_on_train_start(self, state, model):
        self.model = model


class StopAt:
    def __init__(self, step: int):
        self.step = step

    @hookimpl
    def sft_on_step_end(self, state, metrics):
        if state.step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def plugin_manager(*plugins):
    from sft_core import get_plugin_manager

    pm = get_plugin_manager()  # sft-lora is found through its entry point
    for plugin in plugins:
        pm.register(plugin)
    return pm


def losses(run_dir: Path) -> dict[int, float]:
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["train/loss"] for r in lines if "train/loss" in r}


@pytest.fixture(scope="module")
def trained(nemo, tmp_path_factory):
    from sft_trainer.run import train

    run_dir = tmp_path_factory.mktemp("run") / "full"
    keep = KeepModel()
    result = train(config(nemo, run_dir), plugin_manager(keep))
    return result, keep.model


def test_only_adapters_train_and_the_count_is_printed(nemo, trained, capsys, tmp_path):
    from sft_model import load_nemo
    from sft_trainer.run import train

    train(config(nemo, tmp_path / "count", "trainer.sft.max_steps=1"), plugin_manager())
    # per layer, r·(in+out) for qkv (64→128), proj (64→64), fc1 (64→256, gated), fc2 (128→64)
    expected = 2 * 4 * ((64 + 128) + (64 + 64) + (64 + 256) + (128 + 64))
    assert f"PEFT lora: {expected:,} trainable parameters" in capsys.readouterr().out
    _, model = trained
    base = load_nemo(nemo).model.state_dict()
    after = {k.removeprefix("module."): v for k, v in model[0].state_dict().items()}
    for key, value in base.items():
        if not key.endswith("_extra_state"):
            assert torch.equal(after[key], value), key  # bit-identical after 4 steps
    outs = [v for k, v in after.items() if k.endswith("lora.linear_out.weight")]
    assert len(outs) == 8 and all(v.abs().sum() > 0 for v in outs)  # B started at zero and moved
    assert not any(k.startswith("lora") for k in base)


def test_checkpoints_and_nemo_hold_adapters_only(nemo, trained):
    from sft_model.nemo import archive
    from sft_model.nemo.checkpoint import global_shapes

    result, _ = trained
    checkpoint = sorted((result.run_dir / "checkpoints").glob("megatron_gpt_sft--*"))[-1]
    saved = global_shapes(checkpoint / "dist")  # model weights and optimizer state, through the safe loader
    weights = [k for k in saved if not k.startswith(("optimizer.", "common_state"))]
    moments = [k for k in saved if k.startswith("optimizer.state.exp_avg.")]
    assert weights and all(".lora." in k for k in weights), sorted(weights)[:5]
    assert len(moments) == len(weights) and all(".lora." in k for k in moments), sorted(moments)[:5]
    meta = json.loads((checkpoint / "state.json").read_text())
    assert meta["model"] == {"peft": "lora", "base_weights_saved": False}
    work = result.run_dir / "extracted"
    archive.extract(result.nemo_path, work)
    keys = [k for k in global_shapes(work / "model_weights") if "_extra_state" not in k]
    assert keys and all(".lora." in k for k in keys)
    assert result.nemo_path.stat().st_size < Path(nemo).stat().st_size / 3
    from sft_model import read_config

    assert read_config(result.nemo_path).extra["peft"]["peft_scheme"] == "lora"


def test_resume_is_exact(nemo, trained, tmp_path):
    from sft_trainer.run import train

    result, _ = trained
    run_dir = tmp_path / "resumed"
    stopped = train(config(nemo, run_dir), plugin_manager(StopAt(2)))  # same schedule, SIGTERM after step 2
    assert stopped.state.step == 2
    train(config(nemo, run_dir), plugin_manager())
    reference = losses(result.run_dir)
    assert losses(run_dir)[3] == reference[3] and losses(run_dir)[4] == reference[4]


def test_merge_lora_folds_alpha_over_dim(nemo, trained, tmp_path):
    from click.testing import CliRunner
    from sft_cli.app import create_cli
    from sft_core import get_plugin_manager
    from sft_lora.merge import load_with_adapter
    from sft_model import compute_logits, load_nemo

    result, _ = trained
    out = tmp_path / "merged.nemo"
    cli = create_cli(get_plugin_manager())
    run = CliRunner().invoke(cli, ["merge-lora", str(nemo), str(result.nemo_path), str(out)])
    assert run.exit_code == 0, run.output
    tokens = torch.randint(0, 600, (2, 32), generator=torch.Generator().manual_seed(0))
    adapted, _ = load_with_adapter(nemo, result.nemo_path)
    merged, base = load_nemo(out), load_nemo(nemo)
    want, got = compute_logits(adapted, tokens), compute_logits(merged, tokens)
    assert (want - got).abs().max() <= 1e-5
    assert (compute_logits(base, tokens) - want).abs().max() > 1e-3  # the adapter does change the model
    assert merged.config.extra["peft"]["peft_scheme"] == "none"
    listing = json.loads(CliRunner().invoke(cli, ["plugins", "--json"]).output)
    lora = next(p for p in listing["plugins"] if p["name"] == "lora")
    assert lora["hooks"] == ["sft_register_commands", "sft_register_config_sections", "sft_register_peft_methods"]


def test_merge_lora_replaces_an_existing_output_only_with_overwrite(nemo, trained, tmp_path, monkeypatch):
    from click.testing import CliRunner
    from sft_cli.app import create_cli
    from sft_core import get_plugin_manager
    from sft_model import read_config
    from sft_model.nemo import archive

    result, _ = trained
    out = tmp_path / "out" / "merged.nemo"
    out.parent.mkdir()
    out.write_bytes(b"an earlier merge")
    cli = create_cli(get_plugin_manager())

    def merge(*extra):
        return CliRunner().invoke(cli, ["merge-lora", str(nemo), str(result.nemo_path), str(out), *extra])

    with monkeypatch.context() as m:  # refused before any model is loaded
        m.setattr("sft_lora.merge.merge_lora", lambda *a: pytest.fail("merge started although OUT exists"))
        refused = merge()
    assert refused.exit_code == 1
    assert refused.stderr == f"Error: {out} already exists; pass --overwrite to replace it\n"
    assert out.read_bytes() == b"an earlier merge"

    real_write = archive.write

    def write_then_fail(*args):
        real_write(*args)  # the new .nemo is complete beside OUT...
        raise OSError("No space left on device (injected)")  # ...and then the disk fills up

    with monkeypatch.context() as m:
        m.setattr(archive, "write", write_then_fail)
        failed = merge("--overwrite")
    assert failed.exit_code == 1 and "(injected)" in failed.stderr
    assert out.read_bytes() == b"an earlier merge" and sorted(p.name for p in out.parent.iterdir()) == [out.name]

    replaced = merge("--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert read_config(out).extra["peft"]["peft_scheme"] == "none"
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]


def test_bad_lora_settings_name_the_key():
    from sft_lora.config import LoraConfigError, parse

    assert parse({"target_modules": ["attention", "mlp_fc1"]}).target_modules == (
        "attention_qkv", "attention_dense", "mlp_fc1")
    assert parse({"adapter_dim": 8}).scale == 1.0
    with pytest.raises(LoraConfigError, match="target_modules: unknown module 'attn'"):
        parse({"target_modules": ["attn"]})
    with pytest.raises(LoraConfigError, match=r"unknown key model\.peft\.lora_tuning\.rank"):
        parse({"rank": 8})
