"""``ModelConfig`` → megatron-core ``GPTModel`` for this process's pipeline stage.

The layer spec is chosen per device: Transformer Engine's when TE imports and a GPU is present,
otherwise megatron's local spec with our SDPA core attention swapped in through ``ModuleSpec``.
Both specs give the same dist-checkpoint keys (the local spec maps its separate norms onto
``linear_qkv.layer_norm_*``/``linear_fc1.layer_norm_*``), so a checkpoint loads under either.
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
        **memory_settings(cfg, tp),
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


def layer_spec(cfg: ModelConfig, use_te: bool | None = None):
    """The transformer-layer ``ModuleSpec``: TE's on a GPU with TE, else local + SDPA core attention."""
    from megatron.core.models.gpt import gpt_layer_specs

    use_te = te_available() if use_te is None else use_te
    norm = "RMSNorm" if cfg.normalization == "rmsnorm" else "LayerNorm"
    if use_te:
        return gpt_layer_specs.get_gpt_layer_with_transformer_engine_spec()
    from sft_model.attention import SDPAttention
    from sft_model.norm import SequenceParallelNorm

    spec = gpt_layer_specs.get_gpt_layer_local_spec(normalization=norm)
    spec.submodules.self_attention.submodules.core_attention = SDPAttention
    spec.submodules.input_layernorm = spec.submodules.pre_mlp_layernorm = SequenceParallelNorm
    return spec


def block_spec(cfg: ModelConfig, config, spec, transform, layer_norm=None):
    """Per-layer specs for this pipeline stage: ``transform(spec, layer_number, cfg)`` for each of its
    layers (1-based global numbers), as megatron builds ``[spec] * num_layers`` for a single spec;
    ``layer_norm`` is the final norm's module (megatron's default when None)."""
    import copy

    from megatron.core.transformer.transformer_block import (
        LayerNormImpl,
        TransformerBlockSubmodules,
        get_num_layers_to_build,
    )
    from megatron.core.transformer.transformer_layer import get_transformer_layer_offset

    first = get_transformer_layer_offset(config) + 1
    specs = [transform(copy.deepcopy(spec), first + i, cfg) for i in range(get_num_layers_to_build(config))]
    return TransformerBlockSubmodules(layer_specs=specs, layer_norm=layer_norm or LayerNormImpl)


def build_model(cfg: ModelConfig, vocab_size: int | None = None, *, dtype: torch.dtype | None = None,
                use_te: bool | None = None, init: bool = True, layer_spec_transform=None) -> ModelHandle:
    """This pipeline stage's ``GPTModel`` (in a ``ModelHandle``), randomly initialised unless
    ``init=False`` (weights follow).

    ``layer_spec_transform(spec, layer_number, cfg) -> ModuleSpec`` swaps modules into each layer's
    spec before the model is built (PEFT adapters come in this way, never by patching a model).

    ``vocab_size`` is the tokenizer's; the embedding gets ``cfg.padded_vocab_size`` rows and the
    padded rows' logits are pinned to -inf so they never change a softmax or a loss.
    """
    from megatron.core import parallel_state as ps
    from megatron.core.models.gpt import GPTModel

    vocab = vocab_size or cfg.vocab_size
    padded = cfg.padded_vocab_size(vocab)
    tp = ps.get_tensor_model_parallel_world_size()
    if padded % tp:
        raise ModelConfigError(f"padded vocab size {padded} is not divisible by tensor parallel size {tp}; "
                               "use a make_vocab_size_divisible_by that is a multiple of it")
    use_te = te_available() if use_te is None else use_te
    config = transformer_config(cfg, dtype, init=init)
    spec = layer_spec(cfg, use_te)
    if layer_spec_transform is not None or not use_te:  # the local spec's final norm is ours too
        final_norm = None if use_te else spec.submodules.pre_mlp_layernorm
        spec = block_spec(cfg, config, spec, layer_spec_transform or _unchanged, final_norm)
    model = GPTModel(
        config=config, transformer_layer_spec=spec,
        vocab_size=padded, max_sequence_length=cfg.max_position_embeddings,
        pre_process=ps.is_pipeline_first_stage(), post_process=ps.is_pipeline_last_stage(),
        share_embeddings_and_output_weights=cfg.share_embeddings_and_output_weights,
        position_embedding_type=cfg.position_embedding_type, rotary_percent=cfg.rotary_percentage,
        rotary_base=cfg.rotary_base, rope_scaling=cfg.scale_positional_embedding,
        rope_scaling_factor=cfg.rotary_scaling_factor,
        seq_len_interpolation_factor=cfg.seq_len_interpolation_factor,
    )
    if torch.cuda.is_available():
        model.cuda(torch.cuda.current_device())
    if padded > vocab and ps.is_pipeline_last_stage():
        rows = padded // tp
        first_padded = vocab - ps.get_tensor_model_parallel_rank() * rows
        if first_padded < rows:
            model.output_layer.register_forward_hook(partial(_block_padded_rows, start=max(first_padded, 0)))
    return ModelHandle(model, cfg, vocab, use_te)


def _unchanged(spec, layer_number, cfg):
    return spec


def _block_padded_rows(module, args, output, *, start: int):
    """Forward hook on the output layer: padded vocabulary rows get -inf logits (and no gradient)."""
    logits, bias = output
    mask = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
    mask[start:] = True
    return logits.masked_fill(mask, float("-inf")), bias
