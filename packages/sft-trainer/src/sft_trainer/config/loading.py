"""Reading a training config: YAML file + ``key=value`` overrides -> ``TrainConfig``."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from sft_trainer.config.schema import TrainConfig
from sft_trainer.config.structured import ConfigError, apply_override, from_dict, parse_override, to_dict

# Keys of the reference's gpt_sft.yaml that mean nothing here (dataloader tuning, NeMo internals).
# They are dropped with a warning so an Aligner config loads unchanged.
_DATASET_IGNORED = ("num_workers", "pin_memory", "memmap_workers", "index_mapping_dir", "hf_dataset",
                    "concat_sampling_probabilities", "global_batch_size", "micro_batch_size",
                    "truncation_field_mapping", "max_num_samples", "output_original_text", "prompt_template_keys",
                    "min_seq_length", "pad_seq_length_to_mult", "ceil_to_power_2", "label_keys")
IGNORED_REFERENCE_KEYS = frozenset(
    [f"model.data.{ds}.{key}" for ds in ("train_ds", "validation_ds") for key in _DATASET_IGNORED]
    + ["model.data.sample", "model.data.num_workers", "model.sequence_parallel", "model.activations_checkpoint_granularity",
       "model.activations_checkpoint_method", "model.activations_checkpoint_num_layers", "model.encoder_seq_length",
       "model.save_nemo_on_validation_end", "model.megatron_amp_O2", "model.gradient_as_bucket_view",
       "model.mcore_gpt", "model.transformer_engine", "model.use_flash_attention", "model.steps_to_profile",
       "trainer.logger", "trainer.enable_checkpointing", "trainer.use_distributed_sampler", "trainer.max_time",
       "trainer.max_epochs", "trainer.max_steps", "trainer.log_every_n_steps", "trainer.sft.save_top_k",
       "exp_manager.create_early_stopping_callback", "exp_manager.checkpoint_callback_params.always_save_nemo",
       "exp_manager.checkpoint_callback_params.filename", "exp_manager.checkpoint_callback_params.model_parallel_size",
       "exp_manager.checkpoint_callback_params.save_best_model", "exp_manager.resume_from_checkpoint",
       "exp_manager.resume_ignore_no_checkpoint", "exp_manager.log_step_timing", "exp_manager.log_global_rank_0_only"]
)


def _drop_ignored(data: dict[str, Any], prefix: str = "") -> list[str]:
    dropped = []
    for key in list(data):
        path = f"{prefix}.{key}" if prefix else key
        if path in IGNORED_REFERENCE_KEYS:
            del data[key]
            dropped.append(path)
        elif isinstance(data[key], dict):
            dropped += _drop_ignored(data[key], path)
    return dropped


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a mapping at the top level")
    return data


def build_config(data: dict[str, Any], overrides: Sequence[str] = ()) -> TrainConfig:
    """``data`` (a parsed YAML mapping) with overrides applied, checked and typed."""
    data = copy.deepcopy(data)
    for text in overrides:
        key, value = parse_override(text)
        apply_override(data, key, value)
    dropped = _drop_ignored(data)
    if dropped:
        warnings.warn(f"ignored reference config keys (no effect here): {', '.join(dropped)}", stacklevel=2)
    return from_dict(TrainConfig, data)


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    return build_config(read_yaml(path) if path else {}, overrides)


def dump_config(config: TrainConfig) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)
