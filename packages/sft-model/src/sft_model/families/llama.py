"""The Llama family (Llama 2/3, Mistral, Qwen2): RMSNorm, SwiGLU, RoPE, GQA, optional qkv bias,
Mistral's sliding window (and Qwen2's, when switched on).

Weight mapping as the reference converter (convert_llama_hf_to_nemo.py): q/k/v interleaved per
query group, gate and up concatenated into linear_fc1 (gate first), the two norms folded into
linear_qkv / linear_fc1. HF's rotate_half RoPE matches megatron's non-interleaved RoPE, so no
permutation of q/k rows is needed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from sft_model.config import ModelConfig
from sft_model.errors import ConversionError
from sft_model.families.base import (
    Getter,
    hf_dtype_to_precision,
    interleave_qkv,
    pow2_divisor,
    precision_to_hf_dtype,
    split_qkv,
)
from sft_model.families.hf_options import (
    qwen_default_types,
    rope_from_hf,
    rope_to_hf,
    window_from_hf,
    window_to_hf,
)

if TYPE_CHECKING:  # torch is imported where tensors are made: `sft --help` must not load it
    import torch

ARCHITECTURES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM"}


class LlamaFamily:
    """Llama, Mistral (sliding window applied) and Qwen2; subclasses add per-layer tensors and options."""

    name = "llama"
    hf_model_types = ("llama", "mistral", "qwen2")
    architectures: ClassVar[dict[str, str]] = ARCHITECTURES
    default_model_type = "llama"

    def config_from_hf(self, hf: dict[str, Any]) -> ModelConfig:
        return ModelConfig(**self._config_fields(hf))

    def _config_fields(self, hf: dict[str, Any]) -> dict[str, Any]:
        model_type = hf.get("model_type", self.default_model_type)
        if hf.get("hidden_act", "silu") != "silu":
            raise ConversionError(f"hidden_act {hf.get('hidden_act')!r} is not supported (silu is)")
        if hf.get("mlp_bias"):
            raise ConversionError("mlp_bias is not supported")
        if hf.get("attention_bias"):  # Llama's flag also puts a bias on o_proj, which megatron cannot do alone
            raise ConversionError("attention_bias (bias on q/k/v and o_proj) is not supported")
        heads = hf["num_attention_heads"]
        head_dim = hf.get("head_dim") or hf["hidden_size"] // heads
        vocab = hf["vocab_size"]
        qwen = model_type.startswith("qwen")
        return dict(
            num_layers=hf["num_hidden_layers"], hidden_size=hf["hidden_size"], ffn_hidden_size=hf["intermediate_size"],
            num_attention_heads=heads, num_query_groups=hf.get("num_key_value_heads") or heads, kv_channels=head_dim,
            encoder_seq_length=hf.get("max_position_embeddings", 2048),
            max_position_embeddings=hf.get("max_position_embeddings", 2048), position_embedding_type="rope",
            normalization="rmsnorm", layernorm_epsilon=float(hf.get("rms_norm_eps", 1e-6)), activation="fast-swiglu",
            bias=False, qkv_bias=model_type == "qwen2",
            share_embeddings_and_output_weights=bool(hf.get("tie_word_embeddings", False)),
            make_vocab_size_divisible_by=pow2_divisor(vocab), vocab_size=vocab, precision=hf_dtype_to_precision(hf),
            transformer_engine=True, family=self.name, hf_config=hf, **rope_from_hf(hf),
            **window_from_hf(hf, qwen_default_types(hf) if qwen else None),
        )

    def hf_config(self, cfg: ModelConfig) -> dict[str, Any]:
        hf = dict(cfg.hf_config or {})
        model_type = hf.get("model_type") or ("qwen2" if cfg.qkv_bias else self.default_model_type)
        hf.pop("rope_parameters", None)
        hf.pop("rope_scaling", None)
        hf.update(
            architectures=[self.architectures.get(model_type, "LlamaForCausalLM")], model_type=model_type,
            vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, intermediate_size=cfg.ffn_hidden_size,
            num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_attention_heads,
            num_key_value_heads=cfg.num_query_groups, head_dim=cfg.kv_channels, hidden_act="silu",
            max_position_embeddings=cfg.max_position_embeddings, rms_norm_eps=cfg.layernorm_epsilon,
            tie_word_embeddings=cfg.share_embeddings_and_output_weights, dtype=precision_to_hf_dtype(cfg),
            **rope_to_hf(cfg),
        )
        if model_type == "llama":
            hf.update(attention_bias=False, mlp_bias=False)
            if cfg.window_size:
                raise ConversionError("a Llama model has no sliding window; this model's config has one")
        elif model_type.startswith("qwen"):
            window = window_to_hf(cfg)
            hf.update(window, use_sliding_window=bool(cfg.window_size))
            if cfg.window_size:  # transformers 4 reads max_window_layers, not layer_types
                slides = [t == "sliding_attention" for t in window["layer_types"]]
                if slides != sorted(slides):
                    raise ConversionError("Qwen's sliding window covers the layers from max_window_layers on; "
                                          "this model's sliding layers are not such a range")
                hf["max_window_layers"] = slides.index(True)
        else:
            if cfg.window_size and cfg.window_attn_skip_freq is not None:
                raise ConversionError(f"{model_type} slides on every layer or none; this model's window skips some")
            hf["sliding_window"] = window_to_hf(cfg)["sliding_window"]
        return hf

    def default_config(self, **sizes: Any) -> ModelConfig:
        base = dict(num_layers=2, hidden_size=64, num_attention_heads=4, ffn_hidden_size=None, num_query_groups=None,
                    encoder_seq_length=512, position_embedding_type="rope", normalization="rmsnorm",
                    layernorm_epsilon=1e-5, activation="fast-swiglu", bias=False, precision="32",
                    share_embeddings_and_output_weights=False, family=self.name)
        base.update(self._default_overrides())
        base.update({k: v for k, v in sizes.items() if v is not None})
        if base["ffn_hidden_size"] is None:  # Llama's 8/3·h, rounded up to a multiple of 64
            base["ffn_hidden_size"] = -(-(8 * base["hidden_size"] // 3) // 64) * 64
        return ModelConfig(**base)

    def _default_overrides(self) -> dict[str, Any]:
        return {}

    # -- weights ----------------------------------------------------------------------------------
    def hf_to_canonical(self, cfg: ModelConfig, get: Getter, names: set[str]) -> Iterator[tuple[str, torch.Tensor]]:
        yield "embedding.word_embeddings.weight", get("model.embed_tokens.weight")
        for i in range(cfg.num_layers):
            hf, mc = f"model.layers.{i}.", f"decoder.layers.{i}."
            yield from self._attention_in(cfg, get, hf, mc)
            yield f"{mc}self_attention.linear_qkv.layer_norm_weight", get(f"{hf}input_layernorm.weight")
            yield from self._mlp_in(cfg, get, hf, mc, i)
        yield "decoder.final_layernorm.weight", get("model.norm.weight")
        if not cfg.share_embeddings_and_output_weights:
            yield "output_layer.weight", get("lm_head.weight")

    def _attention_in(self, cfg: ModelConfig, get: Getter, hf: str, mc: str) -> Iterator[tuple[str, torch.Tensor]]:
        heads, groups = cfg.num_attention_heads, cfg.num_query_groups
        qkv = [get(f"{hf}self_attn.{p}_proj.weight") for p in "qkv"]
        yield f"{mc}self_attention.linear_qkv.weight", interleave_qkv(*qkv, heads, groups)
        if cfg.qkv_bias:
            biases = [get(f"{hf}self_attn.{p}_proj.bias") for p in "qkv"]
            yield f"{mc}self_attention.linear_qkv.bias", interleave_qkv(*biases, heads, groups)
        yield f"{mc}self_attention.linear_proj.weight", get(f"{hf}self_attn.o_proj.weight")

    def _mlp_in(self, cfg: ModelConfig, get: Getter, hf: str, mc: str, layer: int
                ) -> Iterator[tuple[str, torch.Tensor]]:
        import torch

        gate_up = torch.cat([get(f"{hf}mlp.gate_proj.weight"), get(f"{hf}mlp.up_proj.weight")], dim=0)
        yield f"{mc}mlp.linear_fc1.weight", gate_up
        yield f"{mc}mlp.linear_fc2.weight", get(f"{hf}mlp.down_proj.weight")
        yield f"{mc}mlp.linear_fc1.layer_norm_weight", get(f"{hf}post_attention_layernorm.weight")

    def canonical_to_hf(self, cfg: ModelConfig, get: Getter) -> Iterator[tuple[str, torch.Tensor]]:
        yield "model.embed_tokens.weight", get("embedding.word_embeddings.weight")
        for i in range(cfg.num_layers):
            hf, mc = f"model.layers.{i}.", f"decoder.layers.{i}."
            yield f"{hf}input_layernorm.weight", get(f"{mc}self_attention.linear_qkv.layer_norm_weight")
            yield from self._attention_out(cfg, get, hf, mc)
            yield from self._mlp_out(cfg, get, hf, mc, i)
        yield "model.norm.weight", get("decoder.final_layernorm.weight")
        if not cfg.share_embeddings_and_output_weights:
            yield "lm_head.weight", get("output_layer.weight")

    def _attention_out(self, cfg: ModelConfig, get: Getter, hf: str, mc: str) -> Iterator[tuple[str, torch.Tensor]]:
        heads, groups, d = cfg.num_attention_heads, cfg.num_query_groups, cfg.kv_channels
        for p, t in zip("qkv", split_qkv(get(f"{mc}self_attention.linear_qkv.weight"), heads, groups, d), strict=True):
            yield f"{hf}self_attn.{p}_proj.weight", t
        if cfg.qkv_bias:
            for p, t in zip("qkv", split_qkv(get(f"{mc}self_attention.linear_qkv.bias"), heads, groups, d), strict=True):
                yield f"{hf}self_attn.{p}_proj.bias", t
        yield f"{hf}self_attn.o_proj.weight", get(f"{mc}self_attention.linear_proj.weight")

    def _mlp_out(self, cfg: ModelConfig, get: Getter, hf: str, mc: str, layer: int
                 ) -> Iterator[tuple[str, torch.Tensor]]:
        yield f"{hf}post_attention_layernorm.weight", get(f"{mc}mlp.linear_fc1.layer_norm_weight")
        gate, up = get(f"{mc}mlp.linear_fc1.weight").chunk(2, dim=0)
        yield f"{hf}mlp.gate_proj.weight", gate.contiguous()
        yield f"{hf}mlp.up_proj.weight", up.contiguous()
        yield f"{hf}mlp.down_proj.weight", get(f"{mc}mlp.linear_fc2.weight")
