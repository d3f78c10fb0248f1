"""Training config: NeMo-Aligner keys, Hydra-style overrides, named errors."""

from __future__ import annotations

import pytest
from sft_trainer.config import ConfigError, load_config
from sft_trainer.config.loading import build_config

ALIGNER_YAML = """
name: megatron_gpt_sft
trainer:
  num_nodes: 1
  devices: 8
  accelerator: gpu
  precision: bf16
  sft:
    max_epochs: 1
    max_steps: -1
    val_check_interval: 100
    save_interval: 100
    limit_val_batches: 40
    gradient_clip_val: 1.0
  logger: False
  enable_checkpointing: False
exp_manager:
  explicit_log_dir: /results
  resume_if_exists: True
  resume_ignore_no_checkpoint: True
  create_checkpoint_callback: True
  checkpoint_callback_params:
    monitor: val_loss
    save_top_k: 5
    mode: min
    save_nemo_on_train_end: True
    filename: 'megatron_gpt_sft--{val_loss:.3f}-{step}-{consumed_samples}-{epoch}'
model:
  seed: 1234
  tensor_model_parallel_size: 1
  pipeline_model_parallel_size: 1
  restore_from_path: null
  micro_batch_size: 1
  global_batch_size: 64
  answer_only_loss: True
  peft:
    peft_scheme: "none"
  data:
    chat: False
    chat_prompt_tokens:
      system_turn_start: "\\x00"
      turn_start: "\\x11"
      label_start: "\\x12"
      end_of_turn: "\\x0A"
      end_of_name: "\\x0A"
    train_ds:
      file_path: ???
      global_batch_size: ${model.global_batch_size}
      micro_batch_size: ${model.micro_batch_size}
      shuffle: True
      memmap_workers: null
      max_seq_length: 4096
      num_workers: 0
      pin_memory: True
      add_eos: True
      add_bos: False
      add_sep: False
      label_key: 'output'
      truncation_field: "input"
      index_mapping_dir: null
      prompt_template: "{input} {output}"
  optim:
    name: distributed_fused_adam
    lr: 3e-5
    weight_decay: 0.01
    betas:
    - 0.9
    - 0.98
    sched:
      name: CosineAnnealing
      warmup_steps: 10
      constant_steps: 1000
      min_lr: 9e-7
"""


def test_aligner_yaml_loads_with_overrides(tmp_path):
    path = tmp_path / "gpt_sft.yaml"
    path.write_text(ALIGNER_YAML)
    cfg = load_config(path, [
        "model.restore_from_path=base.nemo", "trainer.sft.max_steps=200",
        "model.data.train_ds.file_path=train.jsonl", "+model.data.validation_ds.file_path=val.jsonl",
        "model.optim.lr=1e-4", "model.optim.sched.warmup_steps=5", "model.answer_only_loss=false",
    ])
    assert "model.data.train_ds.num_workers" in {u.key for u in cfg.unused}
    assert cfg.model.restore_from_path == "base.nemo"
    assert cfg.trainer.sft.max_steps == 200
    assert cfg.model.data.train_ds.file_path == "train.jsonl"
    assert cfg.model.data.validation_ds.file_path == "val.jsonl"
    assert cfg.model.optim.lr == 1e-4 and cfg.model.optim.sched.warmup_steps == 5
    assert cfg.model.answer_only_loss is False
    assert cfg.model.optim.sched.min_lr == 9e-7 and cfg.model.optim.betas == [0.9, 0.98]
    assert cfg.model.data.chat_prompt_tokens["turn_start"] == "\x11"
    assert cfg.exp_manager.checkpoint_callback_params.save_top_k == 5


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.optim.lrr=1e-4", "unknown config key 'model.optim.lrr'; did you mean 'model.optim.lr'?"),
        ("trainer.sft.max_step=3", "unknown config key 'trainer.sft.max_step'; did you mean 'trainer.sft.max_steps'?"),
        ("model.micro_batch_size=two", "config key 'model.micro_batch_size' must be int or null, got 'two'"),
        ("model.micro_batch_size=0", "config key 'model.micro_batch_size' must be an integer >= 1, got 0"),
        ("model.optim.sched.name=Linear", "config key 'model.optim.sched.name' must be 'CosineAnnealing', got 'Linear'"),
        ("trainer.precision=fp8", "config key 'trainer.precision' must be one of bf16,"),
        ("exp_manager.checkpoint_callback_params.mode=best",
         "config key 'exp_manager.checkpoint_callback_params.mode' must be one of 'min', 'max', got 'best'"),
    ],
)
def test_bad_keys_and_values_are_named(override, message):
    with pytest.raises(ConfigError) as info:
        build_config({}, [override])
    assert message in str(info.value)


def test_int_or_fraction_validation_interval():
    assert build_config({}, ["trainer.sft.val_check_interval=0.25"]).trainer.sft.val_check_interval == 0.25
    assert build_config({}, ["trainer.sft.val_check_interval=50"]).trainer.sft.val_check_interval == 50


def test_invalid_yaml_is_located(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  lr: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: invalid YAML"):
        load_config(path)
