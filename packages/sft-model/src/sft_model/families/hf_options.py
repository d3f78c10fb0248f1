"""Hugging Face config options several families share: RoPE settings and sliding windows, read
from transformers 4 and 5 config.json files alike and written back in a form both load.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sft_model.config import ModelConfig
from sft_model.errors import ConversionError

LLAMA3_DEFAULTS = {"low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
LAYER_TYPES = ("sliding_attention", "full_attention")


def rope_parameters(hf: dict[str, Any], layer_type: str | None = None) -> dict[str, Any]:
    """The RoPE parameters (transformers 5 ``rope_parameters``, else 4's ``rope_theta``/``rope_scaling``);
    ``layer_type`` picks one entry of a per-layer-type dict (Gemma 3)."""
    params = dict(hf.get("rope_parameters") or {})
    if layer_type is not None and isinstance(params.get(layer_type), dict):
        params = dict(params[layer_type])
    elif any(isinstance(v, dict) for v in params.values()):
        params = dict(params.get("full_attention") or {})
    scaling = hf.get("rope_scaling") or {}
    merged = {**scaling, **params}
    merged.setdefault("rope_theta", hf.get("rope_theta", 10000.0))
    merged["rope_type"] = merged.get("rope_type", merged.get("type", "default"))
    return merged


def rope_from_hf(hf: dict[str, Any], params: dict[str, Any] | None = None) -> dict[str, Any]:
    """ModelConfig RoPE fields for the scalings megatron-core can express: none, linear, llama3.

    Anything else (longrope/su, yarn, dynamic NTK...) is a one-line ``ConversionError``.
    """
    merged = rope_parameters(hf) if params is None else params
    kind = merged["rope_type"]
    out: dict[str, Any] = {"rotary_base": float(merged["rope_theta"])}
    if kind == "llama3":
        for key, expected in LLAMA3_DEFAULTS.items():
            if float(merged.get(key, expected)) != expected:
                raise ConversionError(f"rope_scaling {key}={merged[key]} is not supported (megatron-core fixes it at {expected})")
        out.update(scale_positional_embedding=True, rotary_scaling_factor=float(merged.get("factor", 8.0)))
    elif kind == "linear":
        out["seq_len_interpolation_factor"] = float(merged["factor"])
    elif kind != "default":
        raise ConversionError(f"RoPE scaling type {kind!r} is not supported: megatron-core's rotary embedding has no "
                              f"{kind} frequencies (default, linear and llama3 are supported)")
    return out


def rope_to_hf(cfg: ModelConfig) -> dict[str, Any]:
    """``rope_theta`` and ``rope_scaling`` (transformers 4 keys, which 5 reads too)."""
    rope: dict[str, Any] = {"rope_type": "default", "rope_theta": cfg.rotary_base}
    if cfg.scale_positional_embedding:
        rope = {**rope, "rope_type": "llama3", "factor": cfg.rotary_scaling_factor, **LLAMA3_DEFAULTS}
    elif cfg.seq_len_interpolation_factor:
        rope = {**rope, "rope_type": "linear", "factor": cfg.seq_len_interpolation_factor}
    return {"rope_theta": cfg.rotary_base, "rope_scaling": rope if rope["rope_type"] != "default" else None}


def window_from_hf(hf: dict[str, Any], default_types: Callable[[int], list[str]] | None = None) -> dict[str, Any]:
    """ModelConfig sliding-window fields from ``sliding_window`` and ``layer_types``.

    Without ``layer_types`` (transformers 4 files) ``default_types(num_layers)`` says which layers
    slide; without that too, every layer does (Mistral, Mixtral, Phi-3).
    """
    w = hf.get("sliding_window")
    if not w or hf.get("use_sliding_window") is False:
        return {}
    if isinstance(w, bool) or not isinstance(w, int) or w < 1:
        raise ConversionError(f"sliding_window: expected a positive integer, got {w!r}")
    n = hf["num_hidden_layers"]
    types = hf.get("layer_types")
    if types is None and default_types is not None:
        types = default_types(n)
    if types is None:
        return {"window_size": [w - 1, 0]}
    if len(types) != n or any(t not in LAYER_TYPES for t in types):
        raise ConversionError(f"layer_types: expected {n} of {', '.join(LAYER_TYPES)}, got {types!r}")
    flags = [int(t == "sliding_attention") for t in types]
    if not any(flags):
        return {}
    return {"window_size": [w - 1, 0], "window_attn_skip_freq": None if all(flags) else flags}


def window_to_hf(cfg: ModelConfig) -> dict[str, Any]:
    """``sliding_window`` (None without one) and ``layer_types`` for ``cfg``."""
    types = ["sliding_attention" if cfg.layer_slides(i + 1) else "full_attention" for i in range(cfg.num_layers)]
    return {"sliding_window": cfg.window_size[0] + 1 if cfg.window_size else None, "layer_types": types}


def qwen_default_types(hf: dict[str, Any]) -> Callable[[int], list[str]]:
    """Qwen2/Qwen3 in transformers 4: with use_sliding_window, the layers from max_window_layers on slide."""
    start = hf.get("max_window_layers", hf["num_hidden_layers"])
    return lambda n: ["sliding_attention" if i >= start else "full_attention" for i in range(n)]
