"""Mixture-of-experts families on megatron-core's MoE layer: Mixtral (``mixtral``) and Qwen3-MoE
(``qwen3_moe``).

Each MoE layer is a ``TopKRouter`` (HF ``gate``) and ``SequentialMLP`` experts, each expert an MLP
with [gate; up] in ``linear_fc1`` like the dense Llama MLP. Routing as transformers does it:
Mixtral (and Qwen3-MoE with ``norm_topk_prob``) softmax over the top-k router logits — equal to
softmax over all, top-k, renormalised; Qwen3-MoE without it takes the top-k of the full softmax as
they are (``moe_router_pre_softmax``). ``router_aux_loss_coef`` becomes ``moe_aux_loss_coeff``: the
load-balancing loss megatron-core adds during training (per layer and micro-batch, as the
reference does; transformers pools all layers and scales by top-k, so values differ by that).

Checkpoints: the hub layout per expert (Mixtral ``block_sparse_moe.experts.<e>.w1/w3/w2``, Qwen3-MoE
``mlp.experts.<e>.gate_proj/up_proj/down_proj``) is read and written; transformers 5's fused
in-memory layout (``mlp.gate``, ``mlp.experts.gate_up_proj`` [E, 2·ffn, h], ``down_proj`` [E, h, ffn]) is read too.
Qwen3-MoE's dense layers (``mlp_only_layers``, ``decoder_sparse_step``) are megatron's ``moe_layer_freq``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from sft_model.config import ModelConfig
from sft_model.errors import ConversionError
from sft_model.families.base import Getter
from sft_model.families.llama import LlamaFamily
from sft_model.families.qwen3 import Qwen3Family

if TYPE_CHECKING:  # torch is imported where tensors are made: `sft --help` must not load it
    import torch

EXPERT = re.compile(r"^(?P<layer>.*\.)(?:block_sparse_moe|mlp)\.experts\.(?P<e>\d+)\.(?P<w>\w+)\.weight$")


class ExpertsMixin:
    """Router and expert weights both ways; ``moe_block`` and ``expert_weights`` name them in HF."""

    moe_block: ClassVar[str] = "mlp"
    expert_weights: ClassVar[tuple[str, str, str]] = ("gate_proj", "up_proj", "down_proj")

    def _moe_fields(self, hf: dict[str, Any]) -> dict[str, Any]:
        experts = hf.get("num_local_experts") or hf.get("num_experts")
        if not experts:
            raise ConversionError("the config names no experts (num_local_experts / num_experts)")
        if hf.get("router_jitter_noise"):
            raise ConversionError("router_jitter_noise is not supported (megatron-core's router has no such noise)")
        return dict(num_moe_experts=int(experts), moe_router_topk=int(hf.get("num_experts_per_tok", 2)),
                    moe_aux_loss_coeff=float(hf.get("router_aux_loss_coef", 0.0)))

    def _moe_hf(self, cfg: ModelConfig) -> dict[str, Any]:
        return dict(num_experts_per_tok=cfg.moe_router_topk, router_aux_loss_coef=cfg.moe_aux_loss_coeff)

    def hf_to_canonical(self, cfg: ModelConfig, get: Getter, names: set[str]) -> Iterator[tuple[str, torch.Tensor]]:
        yield from super().hf_to_canonical(cfg, _unfusing(get, names, self.expert_weights), names)

    def _mlp_in(self, cfg: ModelConfig, get: Getter, hf: str, mc: str, layer: int) -> Iterator[tuple[str, torch.Tensor]]:
        import torch

        if not cfg.layer_is_moe(layer + 1):
            yield from super()._mlp_in(cfg, get, hf, mc, layer)
            return
        gate, up, down = self.expert_weights
        block = f"{hf}{self.moe_block}."
        yield f"{mc}pre_mlp_layernorm.weight", get(f"{hf}post_attention_layernorm.weight")
        yield f"{mc}mlp.router.weight", get(f"{block}gate.weight")
        for e in range(cfg.num_moe_experts):
            expert, ours = f"{block}experts.{e}.", f"{mc}mlp.experts.local_experts.{e}."
            yield f"{ours}linear_fc1.weight", torch.cat([get(f"{expert}{gate}.weight"), get(f"{expert}{up}.weight")])
            yield f"{ours}linear_fc2.weight", get(f"{expert}{down}.weight")

    def _mlp_out(self, cfg: ModelConfig, get: Getter, hf: str, mc: str, layer: int) -> Iterator[tuple[str, torch.Tensor]]:
        if not cfg.layer_is_moe(layer + 1):
            yield from super()._mlp_out(cfg, get, hf, mc, layer)
            return
        gate, up, down = self.expert_weights
        block = f"{hf}{self.moe_block}."
        yield f"{hf}post_attention_layernorm.weight", get(f"{mc}pre_mlp_layernorm.weight")
        yield f"{block}gate.weight", get(f"{mc}mlp.router.weight")
        for e in range(cfg.num_moe_experts):
            expert, ours = f"{block}experts.{e}.", f"{mc}mlp.experts.local_experts.{e}."
            g, u = get(f"{ours}linear_fc1.weight").chunk(2, dim=0)
            yield f"{expert}{gate}.weight", g.contiguous()
            yield f"{expert}{up}.weight", u.contiguous()
            yield f"{expert}{down}.weight", get(f"{ours}linear_fc2.weight")


def _unfusing(get: Getter, names: set[str], weights: tuple[str, str, str]) -> Getter:
    """``get`` that also answers per-expert names from transformers 5's fused expert tensors (and
    Mixtral's ``block_sparse_moe`` names from its ``mlp`` ones)."""

    def unfused(name: str):
        if name in names:
            return get(name)
        renamed = name.replace(".block_sparse_moe.", ".mlp.")  # Mixtral's block, as transformers 5 names it
        if renamed in names:
            return get(renamed)
        m = EXPERT.match(name)
        fused = f"{m['layer']}mlp.experts." if m else ""
        if not m or f"{fused}gate_up_proj" not in names or m["w"] not in weights:
            return get(name)  # the reader's own one-line error for a missing tensor
        e, which = int(m["e"]), weights.index(m["w"])
        if which == 2:
            return get(f"{fused}down_proj")[e].contiguous()
        return get(f"{fused}gate_up_proj")[e].chunk(2, dim=0)[which].contiguous()

    return unfused


class MixtralFamily(ExpertsMixin, LlamaFamily):
    name = "mixtral"
    hf_model_types = ("mixtral",)
    architectures: ClassVar[dict[str, str]] = {"mixtral": "MixtralForCausalLM"}
    default_model_type = "mixtral"
    moe_block = "block_sparse_moe"
    expert_weights = ("w1", "w3", "w2")

    def _config_fields(self, hf: dict[str, Any]) -> dict[str, Any]:
        fields = super()._config_fields(hf)
        return {**fields, **self._moe_fields(hf), "moe_ffn_hidden_size": hf["intermediate_size"]}

    def hf_config(self, cfg: ModelConfig) -> dict[str, Any]:
        hf = super().hf_config(cfg)
        hf.update(self._moe_hf(cfg), num_local_experts=cfg.num_moe_experts,
                  intermediate_size=cfg.moe_ffn_hidden_size or cfg.ffn_hidden_size)
        return hf

    def _default_overrides(self) -> dict[str, Any]:
        return {"num_moe_experts": 4, "moe_router_topk": 2, "moe_aux_loss_coeff": 0.02}


class Qwen3MoeFamily(ExpertsMixin, Qwen3Family):
    name = "qwen3_moe"
    hf_model_types = ("qwen3_moe",)
    architectures: ClassVar[dict[str, str]] = {"qwen3_moe": "Qwen3MoeForCausalLM"}
    default_model_type = "qwen3_moe"

    def _config_fields(self, hf: dict[str, Any]) -> dict[str, Any]:
        fields = {**super()._config_fields(hf), **self._moe_fields(hf)}
        n, step, dense = hf["num_hidden_layers"], int(hf.get("decoder_sparse_step", 1)), set(hf.get("mlp_only_layers") or ())
        pattern = [int(i not in dense and (i + 1) % step == 0) for i in range(n)]
        if not any(pattern):
            raise ConversionError("this Qwen3-MoE config has no MoE layer (mlp_only_layers / decoder_sparse_step)")
        fields.update(moe_ffn_hidden_size=hf.get("moe_intermediate_size") or hf["intermediate_size"],
                      moe_router_pre_softmax=not hf.get("norm_topk_prob", False),
                      moe_layer_freq=1 if all(pattern) else pattern)
        return fields

    def hf_config(self, cfg: ModelConfig) -> dict[str, Any]:
        hf = super().hf_config(cfg)
        hf.pop("num_local_experts", None)
        hf.update(self._moe_hf(cfg), num_experts=cfg.num_moe_experts,
                  moe_intermediate_size=cfg.moe_ffn_hidden_size or cfg.ffn_hidden_size,
                  norm_topk_prob=not cfg.moe_router_pre_softmax, decoder_sparse_step=1,
                  mlp_only_layers=[i for i in range(cfg.num_layers) if not cfg.layer_is_moe(i + 1)])
        return hf

    def _default_overrides(self) -> dict[str, Any]:
        return {**super()._default_overrides(), "num_moe_experts": 4, "moe_router_topk": 2,
                "moe_aux_loss_coeff": 0.001}
