"""The TensorBoard plugin, found through its entry point: a real run's metrics and config read back
with TensorBoard's own event reader; selection by config and SFT_DISABLE_PLUGINS; missing package."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def nemo(tmp_path_factory):
    from sft_data import load_tokenizer
    from sft_data.tokenizers.training import train_sentencepiece
    from sft_model.init import init_nemo

    root = tmp_path_factory.mktemp("tb")
    tok = train_sentencepiece([REPO / "examples/data/corpus.txt"], root / "tok.model", vocab_size=600)
    return init_nemo("llama", tok, load_tokenizer(tok).vocab_size, root / "tiny.nemo", num_layers=2, hidden_size=64,
                     num_attention_heads=4, num_query_groups=2, ffn_hidden_size=64, encoder_seq_length=64)


def config(nemo, run_dir, *overrides):
    from sft_trainer.config.loading import build_config

    return build_config({}, [
        f"model.restore_from_path={nemo}", f"exp_manager.explicit_log_dir={run_dir}",
        f"model.data.train_ds.file_path={REPO / 'examples/data/train.jsonl'}",
        f"model.data.validation_ds.file_path={REPO / 'examples/data/val.jsonl'}",
        "model.data.train_ds.max_seq_length=64", "model.data.validation_ds.max_seq_length=64",
        "trainer.precision=32", "model.micro_batch_size=4", "model.global_batch_size=4", "trainer.sft.max_steps=2",
        "trainer.sft.val_check_interval=2", "trainer.sft.limit_val_batches=1",
        "exp_manager.create_checkpoint_callback=false", "model.optim.sched.warmup_steps=0",
        "model.optim.sched.constant_steps=0",
        "exp_manager.checkpoint_callback_params.save_nemo_on_train_end=false", *overrides,
    ])


def test_a_run_writes_every_metric_and_the_config(nemo, tmp_path):
    from sft_trainer.loggers.jsonl import read_metrics
    from sft_trainer.plugins import get_plugin_manager
    from sft_trainer.run import train
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    pm = get_plugin_manager()  # entry points: the plugin is found as a third party's would be
    assert pm.get_plugin("tensorboard") is not None
    train(config(nemo, tmp_path / "run"), pm)
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"tensors": 0, "scalars": 0})
    events.Reload()
    jsonl = read_metrics(tmp_path / "run" / "metrics.jsonl")
    expected = {(name, r["step"]): value for r in jsonl for name, value in r.items() if name != "step"}
    assert {"train/loss", "train/lr", "train/grad_norm", "train/tokens_per_sec", "train/trained_tokens",
            "train/consumed_samples", "train/step_time", "epoch", "validation/loss"} == set(events.Tags()["scalars"])
    found = {(tag, e.step): e.value for tag in events.Tags()["scalars"] for e in events.Scalars(tag)}
    assert found.keys() == expected.keys()
    for key, value in expected.items():
        assert found[key] == pytest.approx(value, rel=1e-6), key  # event files hold float32
    text = events.Tensors("config")[0].tensor_proto.string_val[0].decode()
    config_json = json.loads(text.removeprefix("```\n").removesuffix("\n```"))
    assert config_json["trainer"]["sft"]["max_steps"] == 2


def test_selection_by_config_and_by_sft_disable_plugins(nemo, tmp_path):
    from sft_data.registry import collect
    from sft_tensorboard import TensorBoardLoggerFactory
    from sft_trainer.loggers.base import RunInfo
    from sft_trainer.plugins import get_plugin_manager

    off = config(nemo, tmp_path, "exp_manager.create_tensorboard_logger=false")
    assert TensorBoardLoggerFactory().create(RunInfo(tmp_path, off, 2)) is None
    names = {entry.name for entry in collect(get_plugin_manager(blocked=["tensorboard"]),
                                             "sft_register_loggers", "logger")}
    assert "tensorboard" not in names and {"jsonl", "console"} <= names


def test_missing_tensorboard_package_is_one_line_naming_the_plugin(nemo, tmp_path, monkeypatch):
    from sft_tensorboard import MissingDependencyError, TensorBoardLoggerFactory
    from sft_trainer.loggers.base import RunInfo

    monkeypatch.setitem(sys.modules, "tensorboard.summary.writer.event_file_writer", None)
    with pytest.raises(MissingDependencyError) as err:
        TensorBoardLoggerFactory().create(RunInfo(tmp_path, config(nemo, tmp_path), 2))
    message = str(err.value)
    assert "\n" not in message
    assert "sft-tensorboard" in message and "pip install tensorboard" in message
