"""The reference's config keys that have no effect here, each with the reason, so that a
NeMo-Aligner ``gpt_sft.yaml`` loads unchanged and the user sees, once, what is not used.

Every other key of the reference's SFT configs is honoured by the schema (or by a plugin's section).
``NOT_YET`` lists keys whose feature this version lacks: a value that asks for the feature is
shown as "not honoured", never silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

_LIGHTNING = "a PyTorch Lightning setting; sft runs its own training loop"
_DATALOADER = "data is prepared once and memory-mapped; there is no dataloader to tune"

NO_EFFECT: dict[str, str] = {
    "trainer.logger": _LIGHTNING,
    "trainer.enable_checkpointing": _LIGHTNING,
    "trainer.use_distributed_sampler": _LIGHTNING,
    "trainer.max_epochs": "Lightning's copy of trainer.sft.max_epochs, which is the one used",
    "trainer.max_steps": "Lightning's copy of trainer.sft.max_steps, which is the one used",
    "trainer.log_every_n_steps": "trainer.sft.log_every_n_steps is the one used",
    "trainer.devices": "processes come from torchrun (--nproc-per-node)",
    "trainer.num_nodes": "nodes come from torchrun (--nnodes)",
    "trainer.sft.save_top_k": "exp_manager.checkpoint_callback_params.save_top_k is the one used",
    "exp_manager.resume_ignore_no_checkpoint": "a run without a checkpoint always starts from the base model",
    "exp_manager.resume_from_checkpoint": "model.resume_from_checkpoint is the one used",
    "exp_manager.create_early_stopping_callback": "trainer.sft.early_stopping.enabled is the one used",
    "exp_manager.log_step_timing": "step time is always logged (train/step_time)",
    "exp_manager.log_global_rank_0_only": "only global rank 0 logs",
    "exp_manager.checkpoint_callback_params.filename":
        "checkpoint names are fixed: megatron_gpt_sft--step=…-consumed_samples=…-epoch=…-val_loss=…",
    "exp_manager.checkpoint_callback_params.model_parallel_size": "read from the run's parallel layout",
    "exp_manager.checkpoint_callback_params.save_best_model": "the best save_top_k are kept by validation loss",
    "exp_manager.checkpoint_callback_params.always_save_nemo": "see model.save_nemo_on_validation_end",
    "model.steerlm": "SteerLM attribute conditioning is not part of SFT here",
    "model.steerable_attributes": "SteerLM attribute conditioning is not part of SFT here",
    "model.sync_batch_comm": "megatron-core's pipeline schedules handle point-to-point batching",
    "model.megatron_amp_O2": "with bf16, fp32 master weights are always kept",
    "model.gradient_as_bucket_view": "megatron-core's DDP always reduces in its gradient buffer",
    "model.encoder_seq_length": "the model's length comes from the .nemo",
    "model.mcore_gpt": "the model is always megatron-core's GPTModel",
    "model.transformer_engine": "Transformer Engine is used on a GPU when installed",
    "model.use_flash_attention": "the attention backend is chosen per device",
    "model.ffn_dropout": "megatron-core applies hidden_dropout to the MLP output",
    "model.steps_to_profile": "no built-in profiler",
    "model.inference": "validation metrics generate greedily (trainer.sft.inference_metrics)",
    "model.data.chat": "record formats are detected from the records (chat or prompt-response)",
    "model.data.sample": "max_steps beyond one epoch runs more epochs, reshuffled",
    "model.data.num_workers": _DATALOADER,
    "model.data.dataloader_type": _DATALOADER,
    "model.data.*_ds.num_workers": _DATALOADER,
    "model.data.*_ds.pin_memory": _DATALOADER,
    "model.data.*_ds.memmap_workers": _DATALOADER,
    "model.data.*_ds.index_mapping_dir": "prepared data is cached under the run directory",
    "model.data.*_ds.hf_dataset": "JSONL is read directly",
    "model.data.*_ds.output_original_text": "validation metrics always have the text",
    "model.data.*_ds.max_num_samples": "every sample is used (limit_train_batches limits steps)",
    "model.data.*_ds.pad_seq_length_to_mult": "rows are padded to the longest in the micro-batch",
    "model.data.*_ds.ceil_to_power_2": "rows are padded to the longest in the micro-batch",
    "model.data.*_ds.truncation_field_mapping": "truncation_field names the fields",
    "model.data.*_ds.prompt_template_keys": "the placeholders of prompt_template are the keys",
    "model.data.*_ds.label_keys": "label_key names the answer field",
    "model.data.validation_ds.concat_sampling_probabilities": "every validation sample is used once (files are "
                                                              "concatenated, not mixed)",
    "model.data.*_ds.tokens_to_generate": "validation metrics use trainer.sft.inference_metrics.max_new_tokens",
}

NOT_YET: dict[str, str] = {
    "model.activations_checkpoint_layers_per_pipeline": "megatron-core has no per-stage recomputation count "
                                                        "(activations_checkpoint_num_layers applies to each stage)",
}
"""Keys of features this version lacks; set to anything but null/false they are listed as not honoured."""


@dataclass(frozen=True)
class UnusedKey:
    """A key of the user's config that changes nothing here, and why."""

    key: str
    value: Any
    reason: str
    asks_for_more: bool = False
    """True when the value asks for something this version does not do (shown as not honoured)."""


def _reason(key: str, table: dict[str, str]) -> str | None:
    return table.get(key) or next((r for pattern, r in table.items() if "*" in pattern and fnmatchcase(key, pattern)),
                                  None)


def take_unused(data: dict[str, Any], prefix: str = "") -> list[UnusedKey]:
    """Remove the keys listed above from ``data`` (a plain nested dict), returning them with reasons."""
    taken = []
    for key in list(data):
        path = f"{prefix}.{key}" if prefix else str(key)
        reason = _reason(path, NO_EFFECT)
        later = _reason(path, NOT_YET)
        if reason or later:
            value = data.pop(key)
            taken.append(UnusedKey(path, value, reason or later, asks_for_more=bool(later) and value not in (None, False)))
        elif isinstance(data[key], dict):
            taken += take_unused(data[key], path)
    return taken


def unused_table(unused: list[UnusedKey]) -> list[str]:
    """The lines that tell the user, once, which of their keys change nothing and why."""
    if not unused:
        return []
    width = min(max(len(f"{u.key} = {u.value!r}") for u in unused), 60)
    lines = []
    for title, rows in (("not honoured (this version lacks the feature)", [u for u in unused if u.asks_for_more]),
                        ("accepted, no effect here", [u for u in unused if not u.asks_for_more])):
        if rows:
            lines.append(f"{title}:")
            lines += [f"  {f'{u.key} = {u.value!r}':<{width}}  {u.reason}" for u in rows]
    return lines


def markdown_table() -> list[str]:
    """README's table of the reference's keys accepted without effect (``NO_EFFECT``), and of those
    this version lacks (``NOT_YET``)."""
    lines = ["| key | why it changes nothing here |", "|---|---|"]
    lines += [f"| `{key}` | {reason} |" for key, reason in NO_EFFECT.items()]
    lines += [f"| `{key}` | not honoured: {reason} |" for key, reason in NOT_YET.items()]
    return lines
