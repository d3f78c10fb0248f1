"""The transformer-layer ``ModuleSpec`` of a ``ModelConfig``: megatron-core's local or Transformer
Engine spec, with sft's modules swapped in where a family needs what megatron lacks.

Local spec (CPU, or a GPU without TE): ``SDPAttention`` as core attention (sliding windows and
soft-capping included); every norm (layer, q/k, final) one of ``sft_model.norms``, since megatron's
torch norms refuse sequence parallelism and zero-centred weights: ``RMSNorm`` for zero-centred
norms, ``SequenceParallelNorm`` (torch's norm, marked for sequence parallelism) otherwise. TE spec: TE's modules, which take ``window_size``, ``qk_layernorm`` and zero-centred gamma
from the config; ``SDPAttention`` replaces TE's core attention only for soft-capped attention.
Both: ``FamilySelfAttention``/``PostNormMLP`` for post-sublayer norms and a local RoPE base, and
megatron's MoE layer (``SequentialMLP`` experts on the local spec, so it runs on a CPU).
"""

from __future__ import annotations

from functools import partial

from sft_model.config import ModelConfig


def _mlp_submodules(mlp):
    """The ``MLPSubmodules`` of a dense MLP entry (a ModuleSpec, or megatron 0.19's partial)."""
    return mlp.submodules if hasattr(mlp, "submodules") else mlp.keywords["submodules"]


def local_norm(cfg: ModelConfig):
    """The norm module of the local spec (see the module docstring)."""
    from sft_model.norms import RMSNorm, SequenceParallelNorm

    return RMSNorm if cfg.layernorm_zero_centered_gamma else SequenceParallelNorm


def layer_spec(cfg: ModelConfig, use_te: bool, *, moe: bool | None = None):
    """One transformer layer's spec; ``moe`` picks the MoE or the dense variant (default: the model's)."""
    from megatron.core.models.gpt import gpt_layer_specs
    from megatron.core.transformer.spec_utils import ModuleSpec

    from sft_model.attention import SDPAttention
    from sft_model.sublayers import FamilySelfAttention, PostNormMLP

    moe = cfg.is_moe if moe is None else moe
    experts = cfg.num_moe_experts if moe else None
    norm = "RMSNorm" if cfg.normalization == "rmsnorm" else "LayerNorm"
    core = (SDPAttention if cfg.attn_logit_softcapping is None
            else ModuleSpec(module=SDPAttention, params={"softcap": cfg.attn_logit_softcapping}))
    if use_te:
        spec = gpt_layer_specs.get_gpt_layer_with_transformer_engine_spec(
            num_experts=experts, moe_grouped_gemm=False, qk_layernorm=cfg.qk_layernorm)
        if cfg.attn_logit_softcapping is not None:
            spec.submodules.self_attention.submodules.core_attention = core
    else:
        spec = gpt_layer_specs.get_gpt_layer_local_spec(num_experts=experts, moe_grouped_gemm=False,
                                                        normalization=norm, qk_layernorm=cfg.qk_layernorm)
        spec.submodules.self_attention.submodules.core_attention = core
        if moe:  # TE keeps an MoE layer's pre-MLP norm under its own name: so do we (portable checkpoints)
            spec.submodules.sharded_state_dict_keys_map.pop("pre_mlp_layernorm.", None)
        sub, norm = spec.submodules, local_norm(cfg)
        sub.input_layernorm = sub.pre_mlp_layernorm = norm
        if cfg.qk_layernorm:
            sub.self_attention.submodules.q_layernorm = sub.self_attention.submodules.k_layernorm = norm
    sub = spec.submodules
    if cfg.post_sublayer_norms or cfg.rotary_base_local is not None:
        attention = sub.self_attention
        sub.self_attention = ModuleSpec(
            module=FamilySelfAttention, submodules=attention.submodules,
            params={**attention.params, "post_norm": cfg.post_sublayer_norms,
                    "local_rotary_base": cfg.rotary_base_local, "rotary_percent": cfg.rotary_percentage})
    if cfg.post_sublayer_norms:
        if moe:
            raise ValueError("post-sublayer norms on MoE layers are not supported")
        sub.mlp = partial(PostNormMLP.as_mlp_submodule, submodules=_mlp_submodules(sub.mlp))
    return spec


def final_norm(cfg: ModelConfig, use_te: bool):
    """The decoder's final norm module class."""
    from megatron.core.transformer.transformer_block import LayerNormImpl

    return LayerNormImpl if use_te else local_norm(cfg)


def block_spec(cfg: ModelConfig, config, use_te: bool, transform=None):
    """Per-layer specs for this pipeline stage (1-based global layer numbers), each passed through
    ``transform(spec, layer_number, cfg)`` when given, as megatron builds ``[spec] * num_layers``."""
    from megatron.core.transformer.transformer_block import (
        TransformerBlockSubmodules,
        get_num_layers_to_build,
    )
    from megatron.core.transformer.transformer_layer import get_transformer_layer_offset

    first = get_transformer_layer_offset(config) + 1
    specs = []
    for number in range(first, first + get_num_layers_to_build(config)):
        spec = layer_spec(cfg, use_te, moe=cfg.layer_is_moe(number))
        specs.append(transform(spec, number, cfg) if transform is not None else spec)
    return TransformerBlockSubmodules(layer_specs=specs, layer_norm=final_norm(cfg, use_te))
