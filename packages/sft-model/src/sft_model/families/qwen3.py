"""Qwen3 (dense): the Llama layout plus a per-head RMSNorm on queries and keys before RoPE, which is
megatron-core's ``qk_layernorm`` (``self_attention.q_layernorm`` / ``k_layernorm``, normalising over
the head dimension). Tied (0.6B–4B) and untied embeddings; no q/k/v bias; sliding windows as Qwen2.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from sft_model.config import ModelConfig
from sft_model.families.base import Getter
from sft_model.families.llama import LlamaFamily

if TYPE_CHECKING:  # torch is imported where tensors are made: `sft --help` must not load it
    import torch


class Qwen3Family(LlamaFamily):
    name = "qwen3"
    hf_model_types = ("qwen3",)
    architectures: ClassVar[dict[str, str]] = {"qwen3": "Qwen3ForCausalLM"}
    default_model_type = "qwen3"

    def _config_fields(self, hf: dict[str, Any]) -> dict[str, Any]:
        return {**super()._config_fields(hf), "qk_layernorm": True}

    def hf_config(self, cfg: ModelConfig) -> dict[str, Any]:
        hf = super().hf_config(cfg)
        hf["attention_bias"] = False
        return hf

    def _default_overrides(self) -> dict[str, Any]:
        return {"qk_layernorm": True, "layernorm_epsilon": 1e-6}

    def _attention_in(self, cfg: ModelConfig, get: Getter, hf: str, mc: str) -> Iterator[tuple[str, torch.Tensor]]:
        yield from super()._attention_in(cfg, get, hf, mc)
        yield f"{mc}self_attention.q_layernorm.weight", get(f"{hf}self_attn.q_norm.weight")
        yield f"{mc}self_attention.k_layernorm.weight", get(f"{hf}self_attn.k_norm.weight")

    def _attention_out(self, cfg: ModelConfig, get: Getter, hf: str, mc: str) -> Iterator[tuple[str, torch.Tensor]]:
        yield from super()._attention_out(cfg, get, hf, mc)
        yield f"{hf}self_attn.q_norm.weight", get(f"{mc}self_attention.q_layernorm.weight")
        yield f"{hf}self_attn.k_norm.weight", get(f"{mc}self_attention.k_layernorm.weight")
