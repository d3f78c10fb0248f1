"""`train()` in this process with plugins registered directly: loggers (one that breaks), a PEFT
method, validation/end events, and early stopping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from sft_core import hookimpl

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def nemo(tiny_nemo):
    return tiny_nemo


@pytest.fixture
def config(train_config):
    return train_config


class Recorder:
    """A logger plugin that records what it is sent, and a second logger that always fails."""

    def __init__(self):
        self.metrics, self.events, self.logged = [], [], []

    @hookimpl
    def sft_register_loggers(self, register):
        recorder = self

        class Factory:
            name = "recorder"

            def create(self, run):
                recorder.run = run
                return recorder

        class Broken:
            name = "broken"

            def create(self, run):
                class Logger:
                    def log_metrics(self, step, metrics):
                        raise ConnectionError("service unreachable")

                    def log_config(self, config):
                        pass

                    def close(self):
                        pass

                return Logger()

        register(Factory())
        register(Broken())

    def log_metrics(self, step, metrics):
        self.metrics.append((step, dict(metrics)))

    def log_config(self, config):
        self.config = config

    def close(self):
        self.events.append("closed")

    @hookimpl
    def sft_on_log(self, step, metrics):  # a plugin may log without registering a logger
        self.logged.append((step, dict(metrics)))

    @hookimpl
    def sft_on_validation_end(self, state, metrics):
        self.events.append(("validation", state.step, metrics["validation/loss"]))

    @hookimpl
    def sft_on_train_end(self, state):
        self.events.append(("end", state.step))


class FreezeAllButFinalNorm:
    """A PEFT method: only the final norm trains."""

    name = "final_norm_only"

    def apply(self, model_chunks, peft_config, model_config):
        trainable = 0
        for chunk in model_chunks:
            for name, param in chunk.named_parameters():
                param.requires_grad = "final_layernorm" in name
                trainable += param.numel() if param.requires_grad else 0
        return trainable


class PeftPlugin:
    @hookimpl
    def sft_register_peft_methods(self, register):
        register(FreezeAllButFinalNorm())


def plugin_manager(*plugins):
    from sft_core import get_plugin_manager

    pm = get_plugin_manager(load_entrypoints=False)
    for plugin in plugins:
        pm.register(plugin)
    return pm


def test_loggers_events_and_a_broken_logger(nemo, tmp_path, capsys, config):
    from sft_trainer.run import train

    recorder = Recorder()
    result = train(config(nemo, tmp_path / "run"), plugin_manager(recorder))
    assert result.state.step == 4
    steps = [s for s, m in recorder.metrics if "train/loss" in m]
    assert steps == [1, 2, 3, 4]
    assert recorder.logged == recorder.metrics
    assert [e[:2] for e in recorder.events if e != "closed"] == [("validation", 2), ("validation", 4), ("end", 4)]
    assert recorder.events.count("closed") == 1
    assert recorder.run.max_steps == 4
    # the broken logger was reported once and disabled; training went on and metrics.jsonl is complete
    assert capsys.readouterr().err.count(
        "plugin 'logger:broken' failed in sft_on_log (ConnectionError: service unreachable); it is disabled") == 1
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "train/loss" in x] == [1, 2, 3, 4]


def test_peft_method_trains_only_what_it_leaves_trainable(nemo, tmp_path, capsys, config):
    from sft_model import load_nemo
    from sft_trainer.run import train

    result = train(config(nemo, tmp_path / "run", "model.peft.peft_scheme=final_norm_only",
                          "trainer.sft.max_steps=2"), plugin_manager(PeftPlugin()))
    assert "PEFT final_norm_only: 64 trainable parameters" in capsys.readouterr().out
    before = load_nemo(nemo).model.state_dict()
    after = load_nemo(result.nemo_path).model.state_dict()
    changed = sorted(k for k in before if not k.endswith("_extra_state") and not torch.equal(before[k], after[k]))
    assert changed == ["decoder.final_layernorm.weight"]


def test_unknown_peft_scheme_names_the_registered_ones(nemo, tmp_path, config):
    from sft_core import SftError
    from sft_trainer.run import train

    with pytest.raises(SftError, match="unknown PEFT method 'lora'"):
        train(config(nemo, tmp_path / "run", "model.peft.peft_scheme=lora"), plugin_manager(PeftPlugin()))


def test_early_stopping(nemo, tmp_path, config):
    from sft_trainer.run import train

    cfg = config(nemo, tmp_path / "run", "trainer.sft.max_steps=20", "trainer.sft.val_check_interval=1",
                 "trainer.sft.early_stopping.enabled=true", "trainer.sft.early_stopping.patience=2",
                 "trainer.sft.early_stopping.min_delta=100.0")
    result = train(cfg, plugin_manager())
    # the first validation sets the best; two without a 100-nat improvement stop the run
    assert result.state.step == 3
    assert result.state.extra["stopped"] == "early_stopping"


def test_prepared_packed_directory_is_used_as_is(nemo, tmp_path, config):
    """A directory from `sft prepare --pack-size` trains as it is; checkpoints carry the config."""
    from sft_data import DataConfig, load_tokenizer, prepare
    from sft_model import load_nemo
    from sft_trainer.run import train

    loaded = load_nemo(nemo, with_weights=False)  # keeps its extracted tokenizer alive
    tok = load_tokenizer(loaded.tokenizer.path)
    prepared = tmp_path / "prepared"
    result = prepare([REPO / "examples/data/train.jsonl"], tok, DataConfig(max_seq_length=64, pack_size=64), prepared)
    bins = result.stats["packing"]["bins"]
    cfg = config(nemo, tmp_path / "run", f"model.data.train_ds.file_path={prepared}", "model.micro_batch_size=1",
                 "model.global_batch_size=4", "trainer.sft.max_steps=2")
    out = train(cfg, plugin_manager())
    assert out.state.step == 2 and out.state.consumed_samples == 8
    assert len(list((tmp_path / "run" / "data_cache").iterdir())) == 1  # only the validation JSONL was prepared
    checkpoint = sorted((tmp_path / "run" / "checkpoints").glob("megatron_gpt_sft--*"))[-1]
    meta = json.loads((checkpoint / "state.json").read_text())
    assert meta["config"]["model"]["data"]["train_ds"]["file_path"] == str(prepared)
    assert meta["sampler"] == {"epoch": 8 // (bins // 4 * 4), "consumed_samples": 8}


class NanForOneStep:
    """Poisons one weight after step 2 and restores it after step 3: step 3's loss is NaN."""

    @hookimpl
    def sft_on_train_start(self, state, model):
        self.param = next(model[0].parameters())

    @hookimpl
    def sft_on_step_end(self, state, metrics):
        with torch.no_grad():
            if state.step == 2:
                self.saved = self.param.detach().clone()
                self.param.fill_(float("nan"))
            elif state.step == 3:
                self.param.copy_(self.saved)


def test_skip_nonfinite_steps_skips_the_update_and_goes_on(nemo, tmp_path, config):
    from sft_trainer.run import train

    result = train(config(nemo, tmp_path / "run", "trainer.sft.skip_nonfinite_steps=true"),
                   plugin_manager(NanForOneStep()))
    assert result.state.step == 4
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    loss = {x["step"]: x["train/loss"] for x in lines if "train/loss" in x}
    assert loss[3] == "nan" and isinstance(loss[4], float)
