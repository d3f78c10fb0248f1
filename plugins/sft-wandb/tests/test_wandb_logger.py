"""The W&B plugin, found through its entry point, in offline mode: a real run read back from the offline
run files (the .wandb transaction log, parsed with wandb's own protobuf records); selection; missing package."""

from __future__ import annotations

import json
import struct
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


BLOCK = 32768  # the .wandb file is a LevelDB-style log: 32 KiB blocks of (crc32, length, type) records


def offline_records(path: Path):
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, parts = 7, b""  # after the 7-byte file header
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:
            pos += left
            continue
        parts += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST: a record is complete
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            parts = b""
            yield record


def test_an_offline_run_holds_every_metric_and_the_config(nemo, tmp_path, monkeypatch, config):
    from sft_core import get_plugin_manager
    from sft_trainer.loggers.jsonl import read_metrics
    from sft_trainer.run import train

    monkeypatch.delenv("WANDB_MODE", raising=False)  # offline must be the plugin's default
    monkeypatch.setenv("WANDB_SILENT", "true")
    pm = get_plugin_manager()
    assert pm.get_plugin("wandb") is not None
    train(config(nemo, tmp_path / "run", "exp_manager.create_wandb_logger=true",
                 "exp_manager.wandb_logger_kwargs.project=sft-tests", "exp_manager.wandb_logger_kwargs.name=tiny"),
          pm)
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1
    history, config_keys, run = {}, set(), None
    for record in offline_records(runs[0]):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            items = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            history[items.pop("_step")] = {k: v for k, v in items.items() if not k.startswith("_")}
        elif kind == "config":
            config_keys |= {item.key for item in record.config.update}
        elif kind == "run":
            run = record.run
    assert (run.project, run.display_name) == ("sft-tests", "tiny")
    assert {"trainer", "model", "exp_manager"} <= config_keys
    expected = {}
    for r in read_metrics(tmp_path / "run" / "metrics.jsonl"):
        expected.setdefault(r["step"], {}).update({k: v for k, v in r.items() if k != "step"})
    assert history.keys() == expected.keys() == {1, 2}
    for step, values in expected.items():
        assert history[step] == pytest.approx(values, rel=1e-12), step


def test_selection_by_config_and_by_sft_disable_plugins(nemo, tmp_path, config):
    from sft_core import collect, get_plugin_manager
    from sft_trainer.loggers.base import RunInfo
    from sft_wandb import WandbLoggerFactory

    assert WandbLoggerFactory().create(RunInfo(tmp_path, config(nemo, tmp_path), 2)) is None  # off by default
    names = {entry.name for entry in collect(get_plugin_manager(blocked=["wandb"]), "sft_register_loggers", "logger")}
    assert "wandb" not in names and {"jsonl", "console"} <= names


def test_missing_wandb_package_is_one_line_naming_the_plugin(nemo, tmp_path, monkeypatch, config):
    from sft_trainer.loggers.base import RunInfo
    from sft_wandb import MissingDependencyError, WandbLoggerFactory

    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(MissingDependencyError) as err:
        WandbLoggerFactory().create(RunInfo(tmp_path, config(nemo, tmp_path, "exp_manager.create_wandb_logger=true"), 2))
    assert "\n" not in str(err.value)
    assert "sft-wandb" in str(err.value) and "pip install wandb" in str(err.value)
