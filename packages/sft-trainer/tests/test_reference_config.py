"""A config written the way NeMo-Aligner's gpt_sft.yaml is (the same keys, ``${...}`` interpolations
relative and absolute, ``???`` for required paths) loads with OmegaConf's rules: every key is
honoured or listed once as accepted without effect, none is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from sft_trainer.config import ConfigError, load_config
from sft_trainer.config.reference_keys import unused_table
from sft_trainer.config.structured import to_dict

REPO = Path(__file__).resolve().parents[3]

REFERENCE_STYLE = """
name: megatron_gpt_sft
trainer:
  num_nodes: 1
  devices: 1
  accelerator: gpu
  precision: bf16
  sft:
    max_epochs: 1
    max_steps: -1
    val_check_interval: 100
    save_interval: ${.val_check_interval}
    limit_val_batches: 1.0
    gradient_clip_val: 1.0
  logger: False
  enable_checkpointing: False
  use_distributed_sampler: False
  max_time: null
  max_epochs: ${.sft.max_epochs}
  max_steps: ${.sft.max_steps}
exp_manager:
  explicit_log_dir: null
  exp_dir: null
  name: ${name}
  create_wandb_logger: False
  wandb_logger_kwargs:
    project: null
    name: null
  resume_if_exists: True
  resume_ignore_no_checkpoint: True
  create_checkpoint_callback: True
  checkpoint_callback_params:
    monitor: val_loss
    save_top_k: 5
    mode: min
    save_nemo_on_train_end: False
    filename: 'megatron_gpt_sft--{${.monitor}:.3f}-{step}-{consumed_samples}-{epoch}'
    model_parallel_size: ${model.tensor_model_parallel_size}
    save_best_model: False
model:
  steerlm:
  steerable_attributes:
    quality: 4
    helpfulness: 4
  seed: 1234
  tensor_model_parallel_size: 1
  pipeline_model_parallel_size: 1
  restore_from_path: ???
  resume_from_checkpoint: null
  save_nemo_on_validation_end: False
  sync_batch_comm: False
  megatron_amp_O2: False
  encoder_seq_length: 4096
  sequence_parallel: False
  activations_checkpoint_granularity: null
  activations_checkpoint_method: null
  activations_checkpoint_num_layers: null
  activations_checkpoint_layers_per_pipeline: null
  answer_only_loss: False
  gradient_as_bucket_view: False
  seq_len_interpolation_factor: null
  use_flash_attention: null
  hidden_dropout: 0.0
  attention_dropout: 0.0
  ffn_dropout: 0.0
  peft:
    peft_scheme: "none"
    restore_from_path: null
    lora_tuning:
      target_modules: ['attention_qkv']
      adapter_dim: 32
      adapter_dropout: 0.0
      column_init_method: 'xavier'
      row_init_method: 'zero'
      layer_selection: null
      weight_tying: False
      position_embedding_strategy: null
  data:
    chat: False
    chat_prompt_tokens:
      system_turn_start: "\\x00"
      turn_start: "\\x11"
      label_start: "\\x12"
      end_of_turn: "\\x0A"
      end_of_name: "\\x0A"
    sample: False
    num_workers: 1
    dataloader_type: single
    train_ds:
      file_path: ???
      global_batch_size: 32
      micro_batch_size: 4
      shuffle: True
      memmap_workers: null
      max_seq_length: 2048
      min_seq_length: 1
      drop_last: True
      label_key: 'output'
      add_eos: True
      add_sep: False
      add_bos: False
      truncation_field: "input"
      index_mapping_dir: null
      prompt_template: "Q: {input}\\nA: {output}"
      hf_dataset: False
      truncation_method: 'right'
    validation_ds:
      file_path: ???
      global_batch_size: ${model.data.train_ds.global_batch_size}
      micro_batch_size: ${model.data.train_ds.micro_batch_size}
      shuffle: False
      memmap_workers: ${model.data.train_ds.memmap_workers}
      max_seq_length: ${model.data.train_ds.max_seq_length}
      min_seq_length: 1
      drop_last: False
      label_key: ${model.data.train_ds.label_key}
      add_eos: ${model.data.train_ds.add_eos}
      add_sep: ${model.data.train_ds.add_sep}
      add_bos: ${model.data.train_ds.add_bos}
      truncation_field: ${model.data.train_ds.truncation_field}
      index_mapping_dir: null
      prompt_template: ${model.data.train_ds.prompt_template}
      hf_dataset: False
      truncation_method: 'right'
      output_original_text: True
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

PATHS = ["model.restore_from_path=base.nemo", "model.data.train_ds.file_path=train.jsonl",
         "model.data.validation_ds.file_path=val.jsonl"]


@pytest.fixture
def reference_yaml(tmp_path):
    path = tmp_path / "gpt_sft.yaml"
    path.write_text(REFERENCE_STYLE, encoding="utf-8")
    return path


def leaves(tree: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for key, value in tree.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and value:
            out.update(leaves(value, path))
        else:
            out[path] = value
    return out


def test_a_missing_required_value_is_one_line_naming_the_key(reference_yaml):
    with pytest.raises(ConfigError, match=r"^config key 'model.restore_from_path' is required \(\?\?\? in the config\)"):
        load_config(reference_yaml)
    with pytest.raises(ConfigError, match=r"^config key 'model.data.validation_ds.file_path' is required"):
        load_config(reference_yaml, PATHS[:2])


def test_interpolations_resolve_relative_and_absolute(reference_yaml):
    cfg = load_config(reference_yaml, [*PATHS, "trainer.sft.val_check_interval=25",
                                       "model.data.train_ds.max_seq_length=512"])
    assert cfg.trainer.sft.save_interval == 25  # ${.val_check_interval}, after the override
    assert cfg.model.data.validation_ds.max_seq_length == 512  # ${model.data.train_ds.max_seq_length}
    assert cfg.model.data.validation_ds.prompt_template == "Q: {input}\nA: {output}"
    assert cfg.exp_manager.name == "megatron_gpt_sft"  # ${name}


def test_batch_sizes_come_from_the_reference_s_place(reference_yaml):
    cfg = load_config(reference_yaml, PATHS)
    assert (cfg.model.global_batch_size, cfg.model.micro_batch_size) == (32, 4)
    assert (cfg.model.data.validation_ds.global_batch_size, cfg.model.data.validation_ds.micro_batch_size) == (32, 4)
    same = load_config(reference_yaml, [*PATHS, "+model.global_batch_size=32"])
    assert same.model.global_batch_size == 32
    with pytest.raises(ConfigError, match=r"model.global_batch_size=64 and model.data.train_ds.global_batch_size=32 "
                                          r"disagree"):
        load_config(reference_yaml, [*PATHS, "+model.global_batch_size=64"])


def test_every_key_is_honoured_or_listed_as_without_effect(reference_yaml):
    cfg = load_config(reference_yaml, PATHS)
    unused = {u.key: u for u in cfg.unused}
    kept = leaves(to_dict(cfg))
    from omegaconf import OmegaConf

    given = leaves(OmegaConf.to_container(OmegaConf.merge(OmegaConf.create(REFERENCE_STYLE),
                                                          OmegaConf.from_dotlist(PATHS)), resolve=True))
    unaccounted = []
    for key, value in given.items():
        if any(key == u or key.startswith(u + ".") for u in unused):
            continue
        if key not in kept:
            unaccounted.append(key)
        elif kept[key] != value and not (isinstance(value, str) and str(kept[key]) == value):
            unaccounted.append(f"{key}: {value!r} became {kept[key]!r}")
    assert unaccounted == []
    # honoured, with the reference's values
    assert cfg.model.answer_only_loss is False and cfg.model.data.chat_prompt_tokens["turn_start"] == "\x11"
    assert unused["trainer.logger"].reason and unused["model.data.num_workers"].reason
    assert not any(u.asks_for_more for u in cfg.unused)  # nothing in it asks for a missing feature
    table = unused_table(cfg.unused)
    assert table[0] == "accepted, no effect here:" and len(table) == len(cfg.unused) + 1


def test_a_feature_this_version_lacks_is_listed_as_not_honoured(reference_yaml):
    cfg = load_config(reference_yaml, [*PATHS, "model.activations_checkpoint_layers_per_pipeline=2"])
    (row,) = [u for u in cfg.unused if u.asks_for_more]
    assert row.key == "model.activations_checkpoint_layers_per_pipeline" and "per-stage" in row.reason
    assert unused_table(cfg.unused)[0] == "not honoured (this version lacks the feature):"


def test_a_broken_interpolation_is_one_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("trainer:\n  sft:\n    save_interval: ${.nowhere}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^config key 'trainer.sft.save_interval': cannot resolve an interpolation"):
        load_config(path)


def test_how_many_reference_keys_are_honoured(reference_yaml):
    """The counts README.md reports: the config's settings (leaves), honoured or accepted without effect."""
    from omegaconf import OmegaConf

    cfg = load_config(reference_yaml, PATHS)
    given = leaves(OmegaConf.to_container(OmegaConf.merge(OmegaConf.create(REFERENCE_STYLE),
                                                          OmegaConf.from_dotlist(PATHS)), resolve=True))
    unused = [u.key for u in cfg.unused]
    idle = [key for key in given if any(key == u or key.startswith(u + ".") for u in unused)]
    assert (len(given), len(given) - len(idle), len(idle), len(unused)) == (119, 87, 32, 31)
    readme = " ".join((REPO / "README.md").read_text(encoding="utf-8").split())
    assert ("of the 119 settings of the reference-style config in `packages/sft-trainer/tests/test_reference_config.py`, "
            "87 are honoured and 32 (31 keys) are accepted without effect") in readme


def test_the_readme_lists_the_keys_without_effect_as_the_code_does():
    from sft_trainer.config.reference_keys import markdown_table

    text = (REPO / "README.md").read_text(encoding="utf-8")
    table = text.split("<!-- reference-keys:start -->\n", 1)[1].split("\n<!-- reference-keys:end -->", 1)[0]
    assert table.splitlines() == markdown_table()
