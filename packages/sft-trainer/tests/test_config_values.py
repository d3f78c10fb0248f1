"""Every config value is range-checked when the config is read: one line naming the dotted key,
the value and what is allowed, before any model is loaded (values that used to break after the
model had loaded, or to train on with NaN, negative learning rates or a ``val_loss=nan`` name)."""

from __future__ import annotations

import dataclasses
import typing

import pytest
from sft_trainer.config import ConfigError
from sft_trainer.config.loading import build_config
from sft_trainer.config.schema import TrainConfig

BAD = [
    # (override, dotted key, value as shown, what the message says is allowed)
    ("trainer.sft.log_every_n_steps=0", "trainer.sft.log_every_n_steps", "0", "an integer >= 1"),
    ("trainer.sft.limit_val_batches=-1", "trainer.sft.limit_val_batches", "-1", "an integer >= 0"),
    ("trainer.sft.limit_val_batches=1.5", "trainer.sft.limit_val_batches", "1.5", "in [0, 1]"),
    ("trainer.sft.limit_train_batches=0", "trainer.sft.limit_train_batches", "0", "an integer >= 1"),
    ("trainer.sft.limit_train_batches=0.0", "trainer.sft.limit_train_batches", "0.0", "in (0, 1]"),
    ("model.optim.sched.min_lr=-1", "model.optim.sched.min_lr", "-1.0", ">= 0"),
    ("model.optim.sched.min_lr=1e-2", "model.optim.sched.min_lr", "0.01", "<= lr (3e-05)"),
    ("model.optim.lr=nan", "model.optim.lr", "nan", "a finite number > 0"),
    ("model.optim.lr=.inf", "model.optim.lr", "inf", "a finite number > 0"),
    ("model.optim.lr=0", "model.optim.lr", "0.0", "> 0"),
    ("model.optim.weight_decay=-0.1", "model.optim.weight_decay", "-0.1", ">= 0"),
    ("model.optim.eps=0", "model.optim.eps", "0.0", "> 0"),
    ("model.optim.betas=[0.9,1.0]", "model.optim.betas[1]", "1.0", "in [0, 1)"),
    ("model.optim.betas=[nan,0.9]", "model.optim.betas[0]", "nan", "in [0, 1)"),
    ("model.optim.betas=[0.9]", "model.optim.betas", "[0.9]", "two numbers"),
    ("model.optim.sched.warmup_steps=-1", "model.optim.sched.warmup_steps", "-1", ">= 0"),
    ("model.optim.sched.constant_steps=-5", "model.optim.sched.constant_steps", "-5", ">= 0"),
    ("model.seed=-1", "model.seed", "-1", "in [0, 4294967295]"),
    ("model.seed=4294967296", "model.seed", "4294967296", "in [0, 4294967295]"),
    ("model.hidden_dropout=1.0", "model.hidden_dropout", "1.0", "in [0, 1)"),
    ("model.attention_dropout=-0.1", "model.attention_dropout", "-0.1", "in [0, 1)"),
    ("model.tensor_model_parallel_size=0", "model.tensor_model_parallel_size", "0", ">= 1"),
    ("model.global_batch_size=6", "model.global_batch_size", "6", "a multiple of micro_batch_size (4)"),
    ("model.data.train_ds.max_seq_length=1", "model.data.train_ds.max_seq_length", "1", ">= 2"),
    ("model.data.validation_ds.truncation_method=middle", "model.data.validation_ds.truncation_method",
     "'middle'", "one of 'right', 'left'"),
    ("model.data.train_ds.pack_size=8", "model.data.train_ds.pack_size", "8", ">= 2048"),
    ("model.data.train_ds.file_path=[]", "model.data.train_ds.file_path", "[]", "a path"),
    ("model.data.chat_prompt_tokens.turn_begin=x", "model.data.chat_prompt_tokens", "{'turn_begin': 'x'}",
     "a mapping of system_turn_start"),
    ("trainer.sft.val_check_interval=0", "trainer.sft.val_check_interval", "0", ">= 1"),
    ("trainer.sft.val_check_interval=1.5", "trainer.sft.val_check_interval", "1.5", "in (0, 1]"),
    ("trainer.sft.val_check_interval=nan", "trainer.sft.val_check_interval", "nan", "in (0, 1]"),
    ("trainer.sft.save_interval=0", "trainer.sft.save_interval", "0", ">= 1"),
    ("trainer.sft.max_steps=-2", "trainer.sft.max_steps", "-2", ">= 0 or -1"),
    ("trainer.sft.max_epochs=-3", "trainer.sft.max_epochs", "-3", ">= 0 or -1"),
    ("trainer.sft.gradient_clip_val=-1", "trainer.sft.gradient_clip_val", "-1.0", ">= 0"),
    ("trainer.sft.gradient_clip_val=inf", "trainer.sft.gradient_clip_val", "inf", ">= 0"),
    ("trainer.sft.early_stopping.patience=0", "trainer.sft.early_stopping.patience", "0", ">= 1"),
    ("trainer.sft.early_stopping.min_delta=nan", "trainer.sft.early_stopping.min_delta", "nan", ">= 0"),
    ("trainer.sft.inference_metrics.num_samples=0", "trainer.sft.inference_metrics.num_samples", "0", ">= 1"),
    ("trainer.accelerator=tpu", "trainer.accelerator", "'tpu'", "one of 'auto', 'gpu', 'cpu'"),
    ("exp_manager.checkpoint_callback_params.save_top_k=-2", "exp_manager.checkpoint_callback_params.save_top_k",
     "-2", ">= 0 or -1"),
    ("exp_manager.name=''", "exp_manager.name", "''", "a non-empty string"),
    ("exp_manager.explicit_log_dir=' '", "exp_manager.explicit_log_dir", "' '", "a non-empty string or null"),
    ("model.peft.peft_scheme=''", "model.peft.peft_scheme", "''", "a non-empty string"),
]
BASE = ["model.micro_batch_size=4", "model.global_batch_size=8"]


@pytest.mark.parametrize(("override", "key", "shown", "allowed"), BAD, ids=[b[0] for b in BAD])
def test_bad_value_is_one_line_naming_key_value_and_range(override, key, shown, allowed):
    with pytest.raises(ConfigError) as info:
        build_config({}, [*BASE, override])
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"config key {key!r} must be "), message
    assert message.endswith(f", got {shown}"), message
    assert allowed in message, message


def test_label_placeholder_and_add_sep_are_checked_when_read():
    with pytest.raises(ConfigError, match=r"^model\.data\.train_ds: prompt_template has no \{answer\} placeholder"):
        build_config({}, ["model.data.train_ds.label_key=answer"])
    with pytest.raises(ConfigError, match=r"^model\.data\.validation_ds: add_sep needs sep_id"):
        build_config({}, ["model.data.validation_ds.add_sep=true"])


def test_a_run_with_no_end_is_refused_when_read():
    with pytest.raises(ConfigError, match=r"'trainer\.sft\.max_steps' must be set .* the run would have no end"):
        build_config({}, ["trainer.sft.max_epochs=null"])
    assert build_config({}, ["trainer.sft.max_epochs=null", "trainer.sft.max_steps=5"]).trainer.sft.max_steps == 5


def test_boundary_values_are_accepted():
    cfg = build_config({}, [
        *BASE, "trainer.sft.limit_val_batches=0", "trainer.sft.limit_val_batches=0.0", "model.seed=0",
        "model.seed=4294967295", "model.optim.sched.min_lr=0", "model.optim.betas=[0.0,0.999]",
        "trainer.sft.gradient_clip_val=0", "trainer.sft.max_steps=0", "trainer.devices=-1",
        "exp_manager.checkpoint_callback_params.save_top_k=-1", "model.optim.sched.min_lr=3e-5",
        "trainer.sft.val_check_interval=1.0", "trainer.sft.limit_train_batches=1",
        "model.data.train_ds.packed_sequence=true", "model.data.train_ds.pack_size=4096",
    ])
    assert cfg.model.seed == 4294967295 and cfg.trainer.sft.limit_val_batches == 0.0


def test_every_float_field_refuses_nan():
    """Walks the schema: a new float field without a finiteness check fails here."""
    floats = []

    def walk(cls, prefix):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            if dataclasses.is_dataclass(tp):
                walk(tp, f"{prefix}{f.name}.")
            elif "float" in str(tp) and "list" not in str(tp):
                floats.append(f"{prefix}{f.name}")

    walk(TrainConfig, "")
    assert len(floats) >= 12, floats
    for key in floats:
        with pytest.raises(ConfigError, match=rf"^config key '{key.replace('.', '[.]')}' must be .*, got nan$"):
            build_config({}, [*BASE, f"{key}=nan"])
