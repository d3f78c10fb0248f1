"""The TensorBoard plugin, found through its entry point: a real run's metrics and config read back
with TensorBoard's own event reader; selection by config and SFT_DISABLE_PLUGINS; missing package."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def nemo(tiny_nemo):
    return tiny_nemo


@pytest.fixture
def config(short_train_config):
    return short_train_config


def test_a_run_writes_every_metric_and_the_config(nemo, tmp_path, config):
    from sft_core import get_plugin_manager
    from sft_trainer.loggers.jsonl import read_metrics
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


def test_selection_by_config_and_by_sft_disable_plugins(nemo, tmp_path, config):
    from sft_core import collect, get_plugin_manager
    from sft_tensorboard import TensorBoardLoggerFactory
    from sft_trainer.loggers.base import RunInfo

    off = config(nemo, tmp_path, "exp_manager.create_tensorboard_logger=false")
    assert TensorBoardLoggerFactory().create(RunInfo(tmp_path, off, 2)) is None
    names = {entry.name for entry in collect(get_plugin_manager(blocked=["tensorboard"]),
                                             "sft_register_loggers", "logger")}
    assert "tensorboard" not in names and {"jsonl", "console"} <= names


def test_missing_tensorboard_package_is_one_line_naming_the_plugin(nemo, tmp_path, monkeypatch, config):
    from sft_tensorboard import MissingDependencyError, TensorBoardLoggerFactory
    from sft_trainer.loggers.base import RunInfo

    monkeypatch.setitem(sys.modules, "tensorboard.summary.writer.event_file_writer", None)
    with pytest.raises(MissingDependencyError) as err:
        TensorBoardLoggerFactory().create(RunInfo(tmp_path, config(nemo, tmp_path), 2))
    message = str(err.value)
    assert "\n" not in message
    assert "sft-tensorboard" in message and "pip install tensorboard" in message
