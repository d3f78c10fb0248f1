"""``ModelConfig`` → megatron-core ``GPTModel`` for this process's pipeline stage.

The layer spec is chosen per device (``sft_model.specs``): Transformer Engine's when TE imports and
a GPU is present, otherwise megatron's local spec with our SDPA core attention swapped in through
``ModuleSpec``. Both specs give the same dist-checkpoint keys (the local spec maps its separate
norms onto ``linear_qkv.layer_norm_*``/``linear_fc1.layer_norm_*``), so a checkpoint loads under either.
"""

from __future__ import annotations

import importlib.util
from functools import partial

import torch
import torch.nn.functional as F

from sft_model.config import ModelConfig
from sft_model.errors import ModelConfigError
from sft_model.handle import ModelHandle

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GELU with the tanh approximation (GPT-2's ``gelu_new``, the reference's ``openai_gelu``)."""
    return F.gelu(x, approximate="tanh")


def _activation(cfg: ModelConfig):
    from megatron.core.activations import squared_relu

    if cfg.openai_gelu and cfg.activation in ("geglu", "fast-geglu"):  # the reference's switch (Gemma's GeGLU)
        return gelu_tanh
    return {"gelu": F.gelu, "approx-gelu": gelu_tanh, "squared-relu": squared_relu, "swiglu": F.silu,
            "fast-swiglu": F.silu, "geglu": F.gelu, "fast-geglu": F.gelu}[cfg.activation]


def te_available() -> bool:
    """True when the Transformer Engine spec can be used: TE importable and a GPU present."""
    return torch.cuda.is_available() and importlib.util.find_spec("transformer_engine") is not None


def transformer_config(cfg: ModelConfig, dtype: torch.dtype | None = None, *, init: bool = True):
    """megatron-core's TransformerConfig for ``cfg`` under the current parallel state.

    TP/PP sizes must equal what ``initialize_model_parallel`` got: left at 1, every pipeline stage
    would silently build all layers. Fusions that need CUDA kernels are off on the CPU.
    """
    from megatron.core import parallel_state as ps
    from megatron.core.transformer.transformer_config import TransformerConfig

    dtype = dtype or DTYPES[cfg.torch_dtype_name]
    tp, pp = ps.get_tensor_model_parallel_world_size(), ps.get_pipeline_model_parallel_world_size()
    if cfg.num_layers % pp:
        raise ModelConfigError(f"num_layers ({cfg.num_layers}) is not divisible by pipeline parallel size {pp}")
    if cfg.num_query_groups % tp or cfg.num_attention_heads % tp:
        raise ModelConfigError(f"attention heads/groups ({cfg.num_attention_heads}/{cfg.num_query_groups}) "
                               f"are not divisible by tensor parallel size {tp}")
    gpu = torch.cuda.is_available()
    return TransformerConfig(
        num_layers=cfg.num_layers, hidden_size=cfg.hidden_size, ffn_hidden_size=cfg.ffn_hidden_size,
        num_attention_heads=cfg.num_attention_heads, num_query_groups=cfg.num_query_groups,
        kv_channels=cfg.kv_channels,
        normalization="RMSNorm" if cfg.normalization == "rmsnorm" else "LayerNorm",
        layernorm_epsilon=cfg.layernorm_epsilon, gated_linear_unit=cfg.gated, activation_func=_activation(cfg),
        add_bias_linear=cfg.bias, add_qkv_bias=cfg.bias or cfg.qkv_bias,
        hidden_dropout=cfg.hidden_dropout, attention_dropout=cfg.attention_dropout,
        init_method_std=cfg.init_method_std, tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp,
        pipeline_dtype=dtype, params_dtype=dtype, bf16=dtype == torch.bfloat16, fp16=dtype == torch.float16,
        use_cpu_initialization=not gpu, bias_activation_fusion=False, masked_softmax_fusion=False,
        bias_dropout_fusion=False, apply_rope_fusion=False, persist_layer_norm=False,
        gradient_accumulation_fusion=False, rotary_interleaved=False, perform_initialization=init,
        **memory_settings(cfg, tp), **_family_options(cfg),
    )


def memory_settings(cfg: ModelConfig, tp: int) -> dict:
    """Sequence parallelism (only with TP > 1: megatron refuses it at TP=1, where it would split
    nothing) and activation recomputation, as megatron-core's TransformerConfig names them."""
    full = cfg.activations_checkpoint_granularity == "full"
    return {
        "sequence_parallel": cfg.sequence_parallel and tp > 1,
        "recompute_granularity": cfg.activations_checkpoint_granularity,
        "recompute_method": cfg.activations_checkpoint_method if full else None,
        "recompute_num_layers": cfg.activations_checkpoint_num_layers if full else None,
    }


def _family_options(cfg: ModelConfig) -> dict:
    """TransformerConfig fields of the newer families (see ``sft_model.architecture``)."""
    out: dict = {"qk_layernorm": cfg.qk_layernorm, "layernorm_zero_centered_gamma": cfg.layernorm_zero_centered_gamma,
                 "softmax_scale": cfg.softmax_scale}
    if cfg.window_size:
        out.update(window_size=tuple(cfg.window_size), window_attn_skip_freq=cfg.window_attn_skip_freq)
    if cfg.is_moe:
        from megatron.core import parallel_state as ps

        ep = ps.get_expert_model_parallel_world_size()
        if cfg.num_moe_experts % ep:
            raise ModelConfigError(f"num_moe_experts ({cfg.num_moe_experts}) is not divisible by expert parallel "
                                   f"size {ep}")
        # The allgather dispatcher needs only all-gathers (gloo has them); the router runs in fp32 as
        # transformers' does; experts are SequentialMLPs of megatron linears (CPU, LoRA) on every spec.
        out.update(num_moe_experts=cfg.num_moe_experts, moe_router_topk=cfg.moe_router_topk,
                   moe_ffn_hidden_size=cfg.moe_ffn_hidden_size or cfg.ffn_hidden_size,
                   moe_router_pre_softmax=cfg.moe_router_pre_softmax, moe_aux_loss_coeff=cfg.moe_aux_loss_coeff,
                   moe_router_load_balancing_type=cfg.moe_router_load_balancing_type,
                   moe_layer_freq=cfg.moe_layer_freq, moe_token_dispatcher_type="allgather", moe_grouped_gemm=False,
                   moe_router_dtype="fp32", expert_model_parallel_size=ep)
    return out


def build_model(cfg: ModelConfig, vocab_size: int | None = None, *, dtype: torch.dtype | None = None,
                use_te: bool | None = None, init: bool = True, layer_spec_transform=None) -> ModelHandle:
    """This pipeline stage's ``GPTModel`` (in a ``ModelHandle``), randomly initialised unless
    ``init=False`` (weights follow).

    ``layer_spec_transform(spec, layer_number, cfg) -> ModuleSpec`` swaps modules into each layer's
    spec before the model is built (PEFT adapters come in this way, never by patching a model).

    ``cfg.sequence_parallel`` splits activations outside attention and MLP over the tensor-parallel
    ranks (a training setting: the trainer switches it on for MoE layers under TP, which megatron-core
    requires; it has no effect at TP=1), as ``memory_settings`` passes it to megatron.

    ``vocab_size`` is the tokenizer's; the embedding gets ``cfg.padded_vocab_size`` rows and the
    padded rows' logits are pinned to -inf so they never change a softmax or a loss.
    """
    from megatron.core import parallel_state as ps
    from megatron.core.models.gpt import GPTModel

    from sft_model.specs import block_spec

    vocab = vocab_size or cfg.vocab_size
    padded = cfg.padded_vocab_size(vocab)
    tp = ps.get_tensor_model_parallel_world_size()
    if padded % tp:
        raise ModelConfigError(f"padded vocab size {padded} is not divisible by tensor parallel size {tp}; "
                               "use a make_vocab_size_divisible_by that is a multiple of it")
    use_te = te_available() if use_te is None else use_te
    config = transformer_config(cfg, dtype, init=init)
    spec = block_spec(cfg, config, use_te, layer_spec_transform)
    model_class, extra = GPTModel, {}
    if cfg.embedding_multiplier is not None or cfg.final_logit_softcapping is not None:
        from sft_model.language_model import FamilyGPTModel

        model_class = FamilyGPTModel
        extra = {"embedding_multiplier": cfg.embedding_multiplier,
                 "final_logit_softcapping": cfg.final_logit_softcapping}
    model = model_class(
        config=config, transformer_layer_spec=spec,
        vocab_size=padded, max_sequence_length=cfg.max_position_embeddings,
        pre_process=ps.is_pipeline_first_stage(), post_process=ps.is_pipeline_last_stage(),
        share_embeddings_and_output_weights=cfg.share_embeddings_and_output_weights,
        position_embedding_type=cfg.position_embedding_type, rotary_percent=cfg.rotary_percentage,
        rotary_base=cfg.rotary_base, rope_scaling=cfg.scale_positional_embedding,
        rope_scaling_factor=cfg.rotary_scaling_factor,
        seq_len_interpolation_factor=cfg.seq_len_interpolation_factor, **extra,
    )
    if torch.cuda.is_available():
        model.cuda(torch.cuda.current_device())
    if padded > vocab and ps.is_pipeline_last_stage():
        rows = padded // tp
        first_padded = vocab - ps.get_tensor_model_parallel_rank() * rows
        if first_padded < rows:
            model.output_layer.register_forward_hook(partial(_block_padded_rows, start=max(first_padded, 0)))
    # soft-capped attention runs in sft's SDPAttention even on the TE spec: masks, not THD, for it
    return ModelHandle(model, cfg, vocab, use_te and cfg.attn_logit_softcapping is None, config.sequence_parallel)


def _block_padded_rows(module, args, output, *, start: int):
    """Forward hook on the output layer: padded vocabulary rows get -inf logits (and no gradient)."""
    logits, bias = output
    mask = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
    mask[start:] = True
    return logits.masked_fill(mask, float("-inf")), bias
