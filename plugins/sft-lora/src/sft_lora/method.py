"""The ``lora`` PEFT method: adapters in the layer specs, base frozen, adapter keys for export."""

from __future__ import annotations

from typing import Any

from sft_lora.config import parse

ADAPTER_MARK = ".lora."


def is_adapter_key(key: str) -> bool:
    """Checkpoint keys of LoRA tensors (``…linear_qkv.lora.linear_in.weight``)."""
    return ADAPTER_MARK in f".{key}"


def _lora_tuning(peft_config: Any) -> dict:
    raw = peft_config.get("lora_tuning") if isinstance(peft_config, dict) else peft_config.lora_tuning
    return dict(raw or {})


def adapt_layer_spec(spec, layer_number: int, settings, gated: bool):
    """``spec`` (one transformer layer's ModuleSpec) with LoRA linears for the selected targets."""
    from sft_lora.layers import AdapterSpec, lora_class

    if not settings.applies_to(layer_number):
        return spec
    attention = spec.submodules.self_attention.submodules
    mlp = _submodules(spec.submodules.mlp)
    if hasattr(mlp, "experts"):  # an MoE layer: the experts' MLPs (every expert of the layer) get adapters
        mlp = _submodules(mlp.experts)
    where = {"attention_qkv": (attention, "linear_qkv"), "attention_dense": (attention, "linear_proj"),
             "mlp_fc1": (mlp, "linear_fc1"), "mlp_fc2": (mlp, "linear_fc2")}
    for target in settings.target_modules:
        holder, attr = where[target]
        adapter = AdapterSpec(settings, target, layer_number, swiglu=gated and target == "mlp_fc1")
        setattr(holder, attr, lora_class(getattr(holder, attr), adapter))
    return spec


def _submodules(entry):
    """A spec entry's submodules: a ModuleSpec's, or (megatron 0.19) a ``partial(…, submodules=…)``'s."""
    return entry.submodules if hasattr(entry, "submodules") else entry.keywords["submodules"]


def fold(model) -> int:
    """Fold every LoRA adapter of ``model`` into its base weight; returns how many were folded."""
    from sft_lora.layers import LoraColumnParallelLinear, LoraRowParallelLinear

    merged = 0
    for module in model.modules():
        if isinstance(module, LoraColumnParallelLinear | LoraRowParallelLinear):
            module.merge()
            merged += 1
    return merged


class LoraMethod:
    name = "lora"

    def layer_spec(self, spec, layer_number: int, peft_config: Any, model_config: Any):
        return adapt_layer_spec(spec, layer_number, parse(_lora_tuning(peft_config)), bool(model_config.gated))

    def is_adapter_key(self, key: str) -> bool:
        return is_adapter_key(key)

    def merge(self, model) -> int:
        """W += B·A·alpha/dim in every adapted linear of ``model`` (a GPTModel); how many were folded."""
        return fold(model)

    def apply(self, model_chunks, peft_config: Any, model_config: Any) -> int:
        """Freeze everything but the adapters; returns the trainable parameter count (this rank)."""
        trainable = 0
        for chunk in model_chunks:
            for name, param in chunk.named_parameters():
                param.requires_grad = is_adapter_key(name)
                trainable += param.numel() if param.requires_grad else 0
        if trainable == 0:
            from sft_lora.config import LoraConfigError

            raise LoraConfigError("LoRA added no adapters: check model.peft.lora_tuning.layer_selection")
        return trainable
