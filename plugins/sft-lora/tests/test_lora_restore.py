"""``model.peft.restore_from_path``: a new run starts from a trained LoRA adapter .nemo. Evaluated
as it is (max_steps=0) it gives the adapter run's validation loss; trained on, it starts from the
adapter's weights; an adapter that is not the one the settings build is one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
LORA = ["model.peft.peft_scheme=lora", "model.peft.lora_tuning.target_modules=[all]",
        "model.peft.lora_tuning.adapter_dim=4", "model.peft.lora_tuning.alpha=16"]


def config(nemo, run_dir, *overrides):
    from sft_trainer.config.loading import build_config

    return build_config({}, [
        f"model.restore_from_path={nemo}", f"exp_manager.explicit_log_dir={run_dir}",
        f"model.data.train_ds.file_path={REPO / 'examples/data/train.jsonl'}",
        f"model.data.validation_ds.file_path={REPO / 'examples/data/val.jsonl'}",
        "model.data.train_ds.max_seq_length=64", "model.data.validation_ds.max_seq_length=64",
        "trainer.precision=32", "model.micro_batch_size=4", "model.global_batch_size=4", "trainer.sft.max_steps=2",
        "trainer.sft.val_check_interval=2", "trainer.sft.limit_val_batches=2", "model.optim.lr=3e-2",
        "model.optim.sched.warmup_steps=0", "model.optim.sched.constant_steps=0",
        "exp_manager.create_tensorboard_logger=false", *LORA, *overrides,
    ])


def metrics(run_dir: Path, key: str) -> dict[int, float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r[key] for r in rows if key in r}


@pytest.fixture(scope="module")
def adapter_run(tiny_nemo, tmp_path_factory) -> tuple[Path, Path]:
    """A 2-step LoRA run: (its run directory, its adapter-only .nemo)."""
    from sft_trainer.run import train

    run = tmp_path_factory.mktemp("adapter") / "run"
    result = train(config(tiny_nemo, run))
    assert result.nemo_path is not None
    return run, result.nemo_path


def test_evaluating_the_restored_adapter_gives_its_validation_loss(tiny_nemo, adapter_run, tmp_path, capsys):
    from sft_trainer.run import train

    run, adapter = adapter_run
    capsys.readouterr()
    result = train(config(tiny_nemo, tmp_path / "eval", f"model.peft.restore_from_path={adapter}",
                          "trainer.sft.max_steps=0"))
    assert f"adapters restored from {adapter}" in capsys.readouterr().out
    assert result.state.step == 0
    evaluated = metrics(tmp_path / "eval", "validation/loss")
    trained = metrics(run, "validation/loss")
    assert list(evaluated) == [0] and list(trained) == [2]
    assert abs(evaluated[0] - trained[2]) <= 1e-6, (evaluated, trained)
    # the base alone (the adapters as initialised: B = 0) scores otherwise
    train(config(tiny_nemo, tmp_path / "base", "trainer.sft.max_steps=0"))
    assert abs(metrics(tmp_path / "base", "validation/loss")[0] - trained[2]) > 1e-3


def test_training_goes_on_from_the_restored_adapter(tiny_nemo, adapter_run, tmp_path):
    from sft_model import read_config
    from sft_trainer.run import train

    run, adapter = adapter_run
    result = train(config(tiny_nemo, tmp_path / "more", f"model.peft.restore_from_path={adapter}"))
    go_on, first = metrics(tmp_path / "more", "train/loss"), metrics(run, "train/loss")
    # the same first batch (same seed, nothing consumed), but the adapter has already learnt from it
    assert sorted(go_on) == [1, 2] and go_on[1] < first[1] - 1e-3
    assert read_config(result.nemo_path).extra["peft"]["restore_from_path"] == str(adapter)


@pytest.mark.parametrize(("override", "problem"), [
    # checkpoint keys stack the layers: [layer, out, in]
    ("model.peft.lora_tuning.adapter_dim=8", r"'decoder.layers.mlp.linear_fc1.lora.linear_in.weight' "
                                             r"is \[2, 4, 64\] there, \[2, 8, 64\] here"),
    ("model.peft.lora_tuning.target_modules=[attention_qkv]",
     r"'decoder.layers.mlp.linear_fc1.lora.linear_in.weight' is in the file but not built by this run"),
])
def test_an_adapter_other_than_the_settings_build_is_one_line(tiny_nemo, adapter_run, tmp_path, override, problem):
    from sft_trainer.adapters import AdapterError
    from sft_trainer.run import train

    _, adapter = adapter_run
    with pytest.raises(AdapterError, match=rf"^model.peft.restore_from_path={adapter}: its adapters are not the ones "
                                           rf"this run's model.peft settings build \({problem}\)$"):
        train(config(tiny_nemo, tmp_path / "run", f"model.peft.restore_from_path={adapter}", override))


def test_an_adapter_for_other_layers_is_one_line(tiny_nemo, adapter_run, tmp_path):
    """Names and shapes agree (checkpoints stack every layer), the shards do not."""
    from sft_trainer.adapters import AdapterError
    from sft_trainer.run import train

    _, adapter = adapter_run
    with pytest.raises(AdapterError, match=rf"^model.peft.restore_from_path: {adapter}: weights do not match the "
                                           r"model config \(") as info:
        train(config(tiny_nemo, tmp_path / "run", f"model.peft.restore_from_path={adapter}",
                     "model.peft.lora_tuning.layer_selection=[1]"))
    assert "\n" not in str(info.value)


def test_a_full_model_is_not_an_adapter(tiny_nemo, tmp_path):
    from sft_trainer.adapters import AdapterError
    from sft_trainer.run import train

    with pytest.raises(AdapterError, match=rf"^model.peft.restore_from_path={tiny_nemo} has its own weights \(not an "
                                           r"adapter-only .nemo\); to train on from it, make it model.restore_from_path$"):
        train(config(tiny_nemo, tmp_path / "run", f"model.peft.restore_from_path={tiny_nemo}"))
