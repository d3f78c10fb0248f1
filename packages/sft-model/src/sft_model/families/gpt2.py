"""The GPT-2 family: LayerNorm, learned absolute positions, GELU (tanh), biases, tied embeddings.

HF GPT-2 stores its linear layers as ``Conv1D`` with weights [in, out]; megatron's are [out, in],
so every matrix is transposed. ``c_attn`` holds q, k and v side by side, which megatron wants
interleaved per head (GPT-2 has one query group per head).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:  # torch is imported where tensors are made: `sft --help` must not load it
    import torch

ACTIVATIONS = {"gelu_new": "approx-gelu", "gelu_pytorch_tanh": "approx-gelu", "gelu": "gelu"}


class GPT2Family:
    name = "gpt2"
    hf_model_types = ("gpt2",)

    def config_from_hf(self, hf: dict[str, Any]) -> ModelConfig:
        act = hf.get("activation_function", "gelu_new")
        if act not in ACTIVATIONS:
            raise ConversionError(f"activation_function {act!r} is not supported ({', '.join(ACTIVATIONS)} are)")
        for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn", "add_cross_attention"):
            if hf.get(flag):
                raise ConversionError(f"GPT-2 option {flag} is not supported")
        if hf.get("scale_attn_weights") is False:
            raise ConversionError("GPT-2 with scale_attn_weights=false is not supported")
        h = hf["n_embd"]
        vocab = hf["vocab_size"]
        return ModelConfig(
            num_layers=hf["n_layer"], hidden_size=h, ffn_hidden_size=hf.get("n_inner") or 4 * h,
            num_attention_heads=hf["n_head"], encoder_seq_length=hf["n_positions"],
            max_position_embeddings=hf["n_positions"], position_embedding_type="learned_absolute",
            normalization="layernorm", layernorm_epsilon=float(hf.get("layer_norm_epsilon", 1e-5)),
            activation=ACTIVATIONS[act], bias=True, share_embeddings_and_output_weights=bool(hf.get("tie_word_embeddings", True)),
            make_vocab_size_divisible_by=pow2_divisor(vocab), vocab_size=vocab, precision=hf_dtype_to_precision(hf),
            transformer_engine=True, family=self.name, hf_config=hf,
        )

    def hf_config(self, cfg: ModelConfig) -> dict[str, Any]:
        hf = dict(cfg.hf_config or {})
        act = {"approx-gelu": "gelu_new", "gelu": "gelu"}.get(cfg.activation)
        if act is None or cfg.position_embedding_type != "learned_absolute" or cfg.normalization != "layernorm":
            raise ConversionError("this model is not GPT-2 shaped (learned positions, layernorm, gelu)")
        hf.update(
            architectures=["GPT2LMHeadModel"], model_type="gpt2", vocab_size=cfg.vocab_size, n_embd=cfg.hidden_size,
            n_layer=cfg.num_layers, n_head=cfg.num_attention_heads, n_inner=cfg.ffn_hidden_size,
            n_positions=cfg.max_position_embeddings, layer_norm_epsilon=cfg.layernorm_epsilon,
            activation_function=hf.get("activation_function") if ACTIVATIONS.get(hf.get("activation_function")) ==
            cfg.activation else act, tie_word_embeddings=cfg.share_embeddings_and_output_weights,
            dtype=precision_to_hf_dtype(cfg),
        )
        return hf

    def default_config(self, **sizes: Any) -> ModelConfig:
        base = dict(num_layers=2, hidden_size=64, num_attention_heads=4, ffn_hidden_size=None, encoder_seq_length=512,
                    position_embedding_type="learned_absolute", normalization="layernorm", layernorm_epsilon=1e-5,
                    activation="approx-gelu", bias=True, precision="32", share_embeddings_and_output_weights=True,
                    family=self.name)
        base.update({k: v for k, v in sizes.items() if v is not None})
        if base["ffn_hidden_size"] is None:
            base["ffn_hidden_size"] = 4 * base["hidden_size"]
        base.pop("num_query_groups", None)
        return ModelConfig(**base)

    @staticmethod
    def _prefix(names: set[str]) -> str:
        # GPT2LMHeadModel saves "transformer.h.0..."; a bare GPT2Model saves "h.0...".
        return "transformer." if any(n.startswith("transformer.") for n in names) else ""

    def hf_to_canonical(self, cfg: ModelConfig, get: Getter, names: set[str]) -> Iterator[tuple[str, torch.Tensor]]:
        t = self._prefix(names)
        heads = cfg.num_attention_heads
        yield "embedding.word_embeddings.weight", get(f"{t}wte.weight")
        yield "embedding.position_embeddings.weight", get(f"{t}wpe.weight")
        for i in range(cfg.num_layers):
            hf, mc = f"{t}h.{i}.", f"decoder.layers.{i}."
            for p in ("weight", "bias"):
                yield f"{mc}self_attention.linear_qkv.layer_norm_{p}", get(f"{hf}ln_1.{p}")
            qkv_w = get(f"{hf}attn.c_attn.weight").t().chunk(3, dim=0)
            yield f"{mc}self_attention.linear_qkv.weight", interleave_qkv(*qkv_w, heads, heads)
            yield f"{mc}self_attention.linear_qkv.bias", interleave_qkv(*get(f"{hf}attn.c_attn.bias").chunk(3), heads, heads)
            yield f"{mc}self_attention.linear_proj.weight", get(f"{hf}attn.c_proj.weight").t().contiguous()
            yield f"{mc}self_attention.linear_proj.bias", get(f"{hf}attn.c_proj.bias")
            for p in ("weight", "bias"):
                yield f"{mc}mlp.linear_fc1.layer_norm_{p}", get(f"{hf}ln_2.{p}")
            yield f"{mc}mlp.linear_fc1.weight", get(f"{hf}mlp.c_fc.weight").t().contiguous()
            yield f"{mc}mlp.linear_fc1.bias", get(f"{hf}mlp.c_fc.bias")
            yield f"{mc}mlp.linear_fc2.weight", get(f"{hf}mlp.c_proj.weight").t().contiguous()
            yield f"{mc}mlp.linear_fc2.bias", get(f"{hf}mlp.c_proj.bias")
        for p in ("weight", "bias"):
            yield f"decoder.final_layernorm.{p}", get(f"{t}ln_f.{p}")
        if not cfg.share_embeddings_and_output_weights:
            yield "output_layer.weight", get("lm_head.weight")

    def canonical_to_hf(self, cfg: ModelConfig, get: Getter) -> Iterator[tuple[str, torch.Tensor]]:
        import torch

        heads, d = cfg.num_attention_heads, cfg.kv_channels
        yield "transformer.wte.weight", get("embedding.word_embeddings.weight")
        yield "transformer.wpe.weight", get("embedding.position_embeddings.weight")
        for i in range(cfg.num_layers):
            hf, mc = f"transformer.h.{i}.", f"decoder.layers.{i}."
            for p in ("weight", "bias"):
                yield f"{hf}ln_1.{p}", get(f"{mc}self_attention.linear_qkv.layer_norm_{p}")
            q, k, v = split_qkv(get(f"{mc}self_attention.linear_qkv.weight"), heads, heads, d)
            yield f"{hf}attn.c_attn.weight", torch.cat([q, k, v], dim=0).t().contiguous()
            yield f"{hf}attn.c_attn.bias", torch.cat(split_qkv(get(f"{mc}self_attention.linear_qkv.bias"), heads, heads, d))
            yield f"{hf}attn.c_proj.weight", get(f"{mc}self_attention.linear_proj.weight").t().contiguous()
            yield f"{hf}attn.c_proj.bias", get(f"{mc}self_attention.linear_proj.bias")
            for p in ("weight", "bias"):
                yield f"{hf}ln_2.{p}", get(f"{mc}mlp.linear_fc1.layer_norm_{p}")
            yield f"{hf}mlp.c_fc.weight", get(f"{mc}mlp.linear_fc1.weight").t().contiguous()
            yield f"{hf}mlp.c_fc.bias", get(f"{mc}mlp.linear_fc1.bias")
            yield f"{hf}mlp.c_proj.weight", get(f"{mc}mlp.linear_fc2.weight").t().contiguous()
            yield f"{hf}mlp.c_proj.bias", get(f"{mc}mlp.linear_fc2.bias")
        for p in ("weight", "bias"):
            yield f"transformer.ln_f.{p}", get(f"decoder.final_layernorm.{p}")
        if not cfg.share_embeddings_and_output_weights:
            yield "lm_head.weight", get("output_layer.weight")
