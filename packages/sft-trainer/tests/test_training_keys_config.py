"""The reference's training keys this version honours, as read from a config: typed, range-checked,
one line naming the key when wrong (their behaviour in a run: test_training_keys_run.py)."""

from __future__ import annotations

import pytest
from sft_trainer.config import ConfigError
from sft_trainer.config.loading import build_config
from sft_trainer.deadline import Deadline

PATHS = ["model.restore_from_path=base.nemo", "model.data.validation_ds.file_path=val.jsonl"]


def load(*overrides: str):
    return build_config({}, [*PATHS, *overrides])


def test_mixing_probabilities_are_read_per_file():
    cfg = load("model.data.train_ds.file_path=[a.jsonl, b.jsonl]",
               "model.data.train_ds.concat_sampling_probabilities=[0.7, 0.3]")
    assert cfg.model.data.train_ds.paths() == ["a.jsonl", "b.jsonl"]
    assert cfg.model.data.train_ds.concat_sampling_probabilities == [0.7, 0.3]
    assert not cfg.unused
    names = load("model.data.train_ds.file_names=[a.jsonl, b.jsonl, c.jsonl]",
                 "model.data.train_ds.concat_sampling_probabilities=[0.7, 0.2, 0.1]")  # sums to 0.9999999999999999
    assert names.model.data.train_ds.paths() == ["a.jsonl", "b.jsonl", "c.jsonl"]


@pytest.mark.parametrize(("overrides", "message"), [
    (["model.data.train_ds.file_path=[a, b]", "model.data.train_ds.concat_sampling_probabilities=[0.5, 0.4]"],
     r"^config key 'model.data.train_ds.concat_sampling_probabilities' must be probabilities that sum to 1 "
     r"\(these sum to 0.9\), got \[0.5, 0.4\]$"),
    (["model.data.train_ds.file_path=[a, b, c]", "model.data.train_ds.concat_sampling_probabilities=[0.5, 0.5]"],
     r"^config key 'model.data.train_ds.concat_sampling_probabilities' must be one probability per file \(3 files\)"),
    (["model.data.train_ds.file_path=a", "model.data.train_ds.concat_sampling_probabilities=[0.5, 0.5]"],
     r"must be one probability per file \(1 file\)"),
    (["model.data.train_ds.file_path=[a, b]", "model.data.train_ds.concat_sampling_probabilities=[1.5, -0.5]"],
     r"^config key 'model.data.train_ds.concat_sampling_probabilities\[0\]' must be a finite number in \[0, 1\]"),
    (["model.data.train_ds.file_path=[a, b]", "model.data.train_ds.concat_sampling_probabilities=[]"],
     r"must be probabilities that sum to 1"),
    (["model.data.train_ds.file_path=a", "model.data.train_ds.file_names=[b]"],
     r"^config key 'model.data.train_ds.file_names' must be null when file_path is set"),
    (["model.data.train_ds.file_names=[]"], r"^config key 'model.data.train_ds.file_names' must be a path"),
])
def test_bad_mixing_settings_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load(*overrides)


def test_validation_probabilities_are_accepted_without_effect():
    cfg = load("model.data.validation_ds.file_path=[v1, v2]",
               "+model.data.validation_ds.concat_sampling_probabilities=[0.5, 0.5]")
    (row,) = cfg.unused
    assert row.key == "model.data.validation_ds.concat_sampling_probabilities" and not row.asks_for_more
    assert "every validation sample is used once" in row.reason


def test_min_seq_length_reaches_the_data_config_and_is_range_checked():
    cfg = load("model.data.train_ds.min_seq_length=8", "model.data.train_ds.file_path=t.jsonl")
    ds = cfg.model.data.train_ds
    assert ds.data_config(cfg.model.data, True, 1).min_seq_length == 8
    assert cfg.model.data.validation_ds.min_seq_length == 1
    with pytest.raises(ConfigError, match=r"^config key 'model.data.validation_ds.min_seq_length' must be an integer "
                                          r"in \[1, 64\], got 65$"):
        load("model.data.validation_ds.max_seq_length=64", "model.data.validation_ds.min_seq_length=65")


@pytest.mark.parametrize(("value", "seconds"), [
    ("'00:00:01:30'", 90.0), ("00:12:00:00", 43200.0), ("'2:01:00:00'", 2 * 86400 + 3600.0),
    ("{minutes: 1, seconds: 30}", 90.0), ("{days: 1}", 86400.0), ("{seconds: 0.5}", 0.5),
])
def test_max_time_takes_lightning_s_forms(value, seconds):
    assert load(f"trainer.max_time={value}").trainer.max_time_seconds == seconds


@pytest.mark.parametrize(("value", "extra"), [
    ("10:00:00:00", "quoted in YAML"),  # YAML reads it as the base-60 number 2160000
    ("3600", "quoted in YAML"), ("'00:01:00'", ""), ("'00:00:00:00'", ""), ("{hours: -1}", ""),
    ("{fortnights: 1}", ""), ("'1d'", ""),
])
def test_max_time_refuses_what_it_cannot_read_for_sure(value, extra):
    with pytest.raises(ConfigError, match=r"^config key 'trainer.max_time' must be a duration > 0: 'DD:HH:MM:SS' or "
                                          r"a mapping of days/hours/minutes/seconds") as info:
        load(f"trainer.max_time={value}")
    assert extra in str(info.value)


def test_resume_nemo_export_and_adapter_keys():
    cfg = load("model.resume_from_checkpoint=runs/x/checkpoints/megatron_gpt_sft--step=000002-consumed_samples=16-epoch=0",
               "model.save_nemo_on_validation_end=true", "model.peft.peft_scheme=lora",
               "model.peft.restore_from_path=adapter.nemo")
    assert cfg.model.resume_from_checkpoint.endswith("step=000002-consumed_samples=16-epoch=0")
    assert cfg.model.save_nemo_on_validation_end is True
    assert cfg.model.peft.restore_from_path == "adapter.nemo"
    assert load().model.save_nemo_on_validation_end is False
    with pytest.raises(ConfigError, match=r"^config key 'model.peft.peft_scheme' must be the adapters' PEFT method"):
        load("model.peft.restore_from_path=adapter.nemo")


class FakeClock:
    def __init__(self, monkeypatch):
        import sft_trainer.deadline as deadline

        self.now = 0.0
        monkeypatch.setattr(deadline, "monotonic", lambda: self.now)


def test_the_deadline_stops_when_a_step_and_a_save_would_not_fit(monkeypatch):
    clock = FakeClock(monkeypatch)
    deadline = Deadline(100.0)
    clock.now = 50.0
    deadline.stepped(20.0)  # no save seen yet: a save is taken to cost a step
    assert not deadline.next_step_overruns(saving_now=False)  # 50 + 20 + 20 = 90
    assert deadline.next_step_overruns(saving_now=True)  # 50 + 20 + 20 + 20 = 110
    deadline.saved(5.0)
    assert not deadline.next_step_overruns(saving_now=True)  # 50 + 20 + 5 + 5 = 80
    deadline.stepped(10.0)  # estimates keep the longest
    clock.now = 76.0
    assert deadline.next_step_overruns(saving_now=False)  # 76 + 20 + 5 = 101
    assert not deadline.expired()
    clock.now = 100.0
    assert deadline.expired()
