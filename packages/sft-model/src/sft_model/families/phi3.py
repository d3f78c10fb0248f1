"""Phi-3 / Phi-3.5 / Phi-4-mini (``phi3``): the Llama layer with fused projections, partial RoPE and an
optional sliding window on every layer.

- ``qkv_proj`` holds [q; k; v] stacked; megatron wants them interleaved per query group, so the
  rows are split at the head boundaries and interleaved (and split and stacked again on export —
  exact, the same rows move).
- ``gate_up_proj`` is already megatron's [gate; up] ``linear_fc1``: copied as it is.
- ``partial_rotary_factor`` (Phi-4-mini: 0.75) is megatron's ``rotary_percent``: both rotate the
  first fraction of each head's channels in the rotate-half layout.
- RoPE scaling: none is expressible besides the default; ``longrope`` (Phi-3.5, Phi-4-mini, the
  128k Phi-3s; called ``su``/``yarn`` in older files) switches per-channel frequency factors with
  the sequence length, which megatron-core's rotary embedding has no way to do: refused in one line.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from sft_model.config import ModelConfig
from sft_model.errors import ConversionError
from sft_model.families.base import Getter, interleave_qkv, precision_to_hf_dtype, split_qkv
from sft_model.families.hf_options import rope_parameters, window_to_hf
from sft_model.families.llama import LlamaFamily

if TYPE_CHECKING:  # torch is imported where tensors are made: `sft --help` must not load it
    import torch


class Phi3Family(LlamaFamily):
    name = "phi3"
    hf_model_types = ("phi3",)
    architectures: ClassVar[dict[str, str]] = {"phi3": "Phi3ForCausalLM"}
    default_model_type = "phi3"

    def _config_fields(self, hf: dict[str, Any]) -> dict[str, Any]:
        params = rope_parameters(hf)
        if params["rope_type"] in ("longrope", "su", "yarn"):
            raise ConversionError(
                f"Phi-3 RoPE scaling {params['rope_type']!r} (per-channel long/short factors chosen by sequence "
                "length) is not supported: megatron-core's rotary embedding cannot express it; only the default "
                "RoPE converts (Phi-3-mini-4k, Phi-3-medium-4k)")
        fields = super()._config_fields(hf)
        fraction = float(params.get("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0)))
        fields["rotary_percentage"] = fraction
        return fields

    def hf_config(self, cfg: ModelConfig) -> dict[str, Any]:
        hf = dict(cfg.hf_config or {})
        for key in ("rope_parameters", "rope_scaling", "layer_types", "use_sliding_window", "max_window_layers"):
            hf.pop(key, None)
        if cfg.window_size and cfg.window_attn_skip_freq is not None:
            raise ConversionError("Phi-3 slides on every layer or none; this model's window skips some")
        if cfg.kv_channels != cfg.hidden_size // cfg.num_attention_heads:
            raise ConversionError("Phi-3's head size is hidden_size / num_attention_heads; this model's differs")
        hf.update(
            architectures=["Phi3ForCausalLM"], model_type="phi3", vocab_size=cfg.vocab_size,
            hidden_size=cfg.hidden_size, intermediate_size=cfg.ffn_hidden_size, num_hidden_layers=cfg.num_layers,
            num_attention_heads=cfg.num_attention_heads, num_key_value_heads=cfg.num_query_groups, hidden_act="silu",
            max_position_embeddings=cfg.max_position_embeddings, rms_norm_eps=cfg.layernorm_epsilon,
            tie_word_embeddings=cfg.share_embeddings_and_output_weights, dtype=precision_to_hf_dtype(cfg),
            rope_theta=cfg.rotary_base, rope_scaling=None, partial_rotary_factor=cfg.rotary_percentage,
            sliding_window=window_to_hf(cfg)["sliding_window"],
        )
        for key in ("bos_token_id", "eos_token_id", "pad_token_id"):  # Phi3Config's defaults are its 32k vocabulary's
            hf.setdefault(key, None)
        return hf

    def _default_overrides(self) -> dict[str, Any]:
        return {"rotary_percentage": 0.75}

    def _attention_in(self, cfg: ModelConfig, get: Getter, hf: str, mc: str) -> Iterator[tuple[str, torch.Tensor]]:
        heads, groups, d = cfg.num_attention_heads, cfg.num_query_groups, cfg.kv_channels
        qkv = get(f"{hf}self_attn.qkv_proj.weight")
        q, k, v = qkv.split([heads * d, groups * d, groups * d], dim=0)
        yield f"{mc}self_attention.linear_qkv.weight", interleave_qkv(q, k, v, heads, groups)
        yield f"{mc}self_attention.linear_proj.weight", get(f"{hf}self_attn.o_proj.weight")

    def _attention_out(self, cfg: ModelConfig, get: Getter, hf: str, mc: str) -> Iterator[tuple[str, torch.Tensor]]:
        import torch

        heads, groups, d = cfg.num_attention_heads, cfg.num_query_groups, cfg.kv_channels
        q, k, v = split_qkv(get(f"{mc}self_attention.linear_qkv.weight"), heads, groups, d)
        yield f"{hf}self_attn.qkv_proj.weight", torch.cat([q, k, v], dim=0)
        yield f"{hf}self_attn.o_proj.weight", get(f"{mc}self_attention.linear_proj.weight")

    def _mlp_in(self, cfg: ModelConfig, get: Getter, hf: str, mc: str, layer: int
                ) -> Iterator[tuple[str, torch.Tensor]]:
        yield f"{mc}mlp.linear_fc1.weight", get(f"{hf}mlp.gate_up_proj.weight")
        yield f"{mc}mlp.linear_fc2.weight", get(f"{hf}mlp.down_proj.weight")
        yield f"{mc}mlp.linear_fc1.layer_norm_weight", get(f"{hf}post_attention_layernorm.weight")

    def _mlp_out(self, cfg: ModelConfig, get: Getter, hf: str, mc: str, layer: int
                 ) -> Iterator[tuple[str, torch.Tensor]]:
        yield f"{hf}post_attention_layernorm.weight", get(f"{mc}mlp.linear_fc1.layer_norm_weight")
        yield f"{hf}mlp.gate_up_proj.weight", get(f"{mc}mlp.linear_fc1.weight")
        yield f"{hf}mlp.down_proj.weight", get(f"{mc}mlp.linear_fc2.weight")
