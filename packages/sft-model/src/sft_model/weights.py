"""Moving whole (TP=1, PP=1) models' weights in and out under canonical names.

Canonical names are the dist-checkpoint names without ``model.``; the local spec's separate norm
modules are renamed onto them (see ``families.base.LOCAL_TO_CANONICAL``). Vocabulary tensors hold
``padded_vocab_size`` rows in the model and ``vocab_size`` rows outside it: padded rows are zero
when written in and cut off when read out.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from sft_model.errors import ConversionError
from sft_model.families.base import canonical_name

VOCAB_TENSORS = ("embedding.word_embeddings.weight", "output_layer.weight")


def _layer_key_maps(model) -> dict[str, dict[str, str]]:
    """``decoder.layers.<i>.`` → that layer's ``sharded_state_dict_keys_map`` (its dist-checkpoint renames)."""
    layers = getattr(getattr(model, "decoder", None), "layers", ())
    return {f"decoder.layers.{i}.": dict(getattr(getattr(layer, "submodules_config", None),
                                                 "sharded_state_dict_keys_map", None) or {})
            for i, layer in enumerate(layers)}


def canonical_tensors(model) -> dict[str, torch.Tensor]:
    """Canonical name → the model's own tensor (parameters and persistent tensors, no extra state).

    A layer's own key map renames its separate norms as its checkpoint does (an MoE layer keeps
    ``pre_mlp_layernorm``, as Transformer Engine's spec names it); models built elsewhere fall back
    to ``families.base.LOCAL_TO_CANONICAL``.
    """
    maps = _layer_key_maps(model)
    out = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        if name.endswith("_extra_state") or not isinstance(tensor, torch.Tensor):
            continue
        out[_canonical(name, maps)] = tensor
    if getattr(model, "share_embeddings_and_output_weights", False):
        out.pop("output_layer.weight", None)
    return out


def _canonical(name: str, maps: dict[str, dict[str, str]]) -> str:
    prefix = name[: name.find(".", len("decoder.layers.")) + 1] if name.startswith("decoder.layers.") else ""
    if prefix not in maps:
        return canonical_name(name)
    rest = name[len(prefix):]
    for old, new in maps[prefix].items():
        if rest.startswith(old):
            return prefix + new + rest[len(old):]
    return name


def _require_whole_model() -> None:
    from megatron.core import parallel_state as ps

    if (ps.get_tensor_model_parallel_world_size(), ps.get_pipeline_model_parallel_world_size(),
            ps.get_expert_model_parallel_world_size()) != (1, 1, 1):
        raise ConversionError("weight conversion runs in one process (TP=1, PP=1, EP=1)")


@torch.no_grad()
def assign(model, items: Iterable[tuple[str, torch.Tensor]]) -> None:
    """Copy canonical tensors into ``model``; every parameter must be given exactly once."""
    _require_whole_model()
    targets = canonical_tensors(model)
    seen: set[str] = set()
    for name, value in items:
        if name not in targets:
            raise ConversionError(f"the model has no tensor {name!r}")
        if name in seen:
            raise ConversionError(f"tensor {name!r} given twice")
        target = targets[name]
        if name in VOCAB_TENSORS and value.shape[0] < target.shape[0] and value.shape[1:] == target.shape[1:]:
            target[value.shape[0]:].zero_()
            target = target[: value.shape[0]]
        if target.shape != value.shape:
            raise ConversionError(f"{name}: shape {tuple(value.shape)} does not fit {tuple(target.shape)}")
        target.copy_(value)
        seen.add(name)
    missing = sorted(set(targets) - seen)
    if missing:
        raise ConversionError(f"no value for {len(missing)} model tensors, e.g. {missing[0]!r}")


def getter(model, vocab_size: int):
    """``get(canonical_name)``: a detached tensor, vocabulary rows cut to ``vocab_size``."""
    _require_whole_model()
    tensors = canonical_tensors(model)

    def get(name: str) -> torch.Tensor:
        if name not in tensors:
            raise ConversionError(f"the model has no tensor {name!r}")
        t = tensors[name].detach()
        return t[:vocab_size] if name in VOCAB_TENSORS else t

    return get
