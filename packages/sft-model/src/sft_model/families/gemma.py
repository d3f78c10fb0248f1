"""Gemma 2 (``gemma2``) and Gemma 3 text (``gemma3_text``).

What they add to the Llama layer, and where it lives here:
- embeddings × √hidden → ``embedding_multiplier`` (``FamilyGPTModel``);
- RMSNorm weights stored zero-centred (x̂·(1 + w)) → ``layernorm_zero_centered_gamma`` (TE's norms,
  or ``sft_model.norms.RMSNorm`` on the local spec); HF's weights are copied as they are;
- a norm after attention and after the MLP, before each residual add → ``post_sublayer_norms``
  (``FamilySelfAttention``/``PostNormMLP``); HF's ``pre_feedforward_layernorm`` is megatron's
  pre-MLP norm and its ``post_attention_layernorm`` the post-attention one (not Llama's meaning);
- GeGLU with tanh GELU → ``activation: fast-geglu`` with ``openai_gelu`` (the reference's switch);
- attention scale ``query_pre_attn_scalar^-½`` → ``softmax_scale``;
- Gemma 2: attention-logit and final-logit soft-capping; Gemma 3: q/k RMSNorm (``qk_layernorm``) and
  a RoPE base of its own on the sliding-window layers (``rotary_base_local``);
- alternating sliding-window and global layers from ``layer_types`` (or, in transformers 4 files,
  every second layer for Gemma 2 and ``sliding_window_pattern`` for Gemma 3).
The multimodal ``gemma3`` checkpoints (vision tower, ``language_model.`` prefix) are not converted.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from sft_model.config import ModelConfig
from sft_model.errors import ConversionError
from sft_model.families.base import Getter, hf_dtype_to_precision, pow2_divisor, precision_to_hf_dtype
from sft_model.families.hf_options import (
    rope_from_hf,
    rope_parameters,
    rope_to_hf,
    window_from_hf,
    window_to_hf,
)
from sft_model.families.llama import LlamaFamily

if TYPE_CHECKING:  # torch is imported where tensors are made: `sft --help` must not load it
    import torch

GELU = {"gelu_pytorch_tanh": True, "gelu_new": True, "gelu": False}  # HF activation → tanh approximation?


def _periodic(period: int) -> Any:
    return lambda n: ["sliding_attention" if (i + 1) % period else "full_attention" for i in range(n)]


class GemmaFamily(LlamaFamily):
    """Gemma 2 (``version=2``) or Gemma 3 text (``version=3``)."""

    architectures: ClassVar[dict[str, str]] = {"gemma2": "Gemma2ForCausalLM", "gemma3_text": "Gemma3ForCausalLM"}

    def __init__(self, version: int):
        self.version = version
        self.name = f"gemma{version}"
        self.default_model_type = "gemma2" if version == 2 else "gemma3_text"
        self.hf_model_types = (self.default_model_type,)

    def _config_fields(self, hf: dict[str, Any]) -> dict[str, Any]:
        act = hf.get("hidden_activation") or hf.get("hidden_act") or "gelu_pytorch_tanh"
        if act not in GELU:
            raise ConversionError(f"hidden_activation {act!r} is not supported ({', '.join(GELU)} are)")
        for flag in ("attention_bias", "use_bidirectional_attention"):
            if hf.get(flag):
                raise ConversionError(f"Gemma option {flag} is not supported")
        heads, h = hf["num_attention_heads"], hf["hidden_size"]
        head_dim = hf.get("head_dim") or h // heads
        vocab = hf["vocab_size"]
        if self.version == 2:
            rope = rope_from_hf(hf)
            windows = window_from_hf(hf, _periodic(2))
        else:
            rope = rope_from_hf(hf, rope_parameters(hf, "full_attention"))
            local = rope_parameters(hf, "sliding_attention")
            if "rope_local_base_freq" in hf:  # transformers 4
                local = {"rope_type": "default", "rope_theta": hf["rope_local_base_freq"]}
            elif not isinstance((hf.get("rope_parameters") or {}).get("sliding_attention"), dict):
                local = {"rope_type": "default", "rope_theta": 10000.0}
            if local["rope_type"] != "default":
                raise ConversionError(f"Gemma 3 local RoPE scaling {local['rope_type']!r} is not supported")
            rope["rotary_base_local"] = float(local["rope_theta"])
            windows = window_from_hf(hf, _periodic(int(hf.get("sliding_window_pattern", 6))))
        return dict(
            num_layers=hf["num_hidden_layers"], hidden_size=h, ffn_hidden_size=hf["intermediate_size"],
            num_attention_heads=heads, num_query_groups=hf.get("num_key_value_heads") or heads, kv_channels=head_dim,
            encoder_seq_length=hf.get("max_position_embeddings", 8192),
            max_position_embeddings=hf.get("max_position_embeddings", 8192), position_embedding_type="rope",
            normalization="rmsnorm", layernorm_epsilon=float(hf.get("rms_norm_eps", 1e-6)), activation="fast-geglu",
            openai_gelu=GELU[act], bias=False, share_embeddings_and_output_weights=bool(hf.get("tie_word_embeddings", True)),
            make_vocab_size_divisible_by=pow2_divisor(vocab), vocab_size=vocab, precision=hf_dtype_to_precision(hf),
            transformer_engine=True, family=self.name, hf_config=hf,
            layernorm_zero_centered_gamma=True, post_sublayer_norms=True, qk_layernorm=self.version == 3,
            embedding_multiplier=h**0.5, softmax_scale=float(hf.get("query_pre_attn_scalar", head_dim)) ** -0.5,
            attn_logit_softcapping=_cap(hf, "attn_logit_softcapping"),
            final_logit_softcapping=_cap(hf, "final_logit_softcapping"), **rope, **windows,
        )

    def hf_config(self, cfg: ModelConfig) -> dict[str, Any]:
        hf = dict(cfg.hf_config or {})
        for key in ("rope_parameters", "rope_scaling", "rope_local_base_freq", "hidden_act", "sliding_window_pattern"):
            hf.pop(key, None)
        windows = window_to_hf(cfg)
        hf.update(
            architectures=[self.architectures[self.default_model_type]], model_type=self.default_model_type,
            vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, intermediate_size=cfg.ffn_hidden_size,
            num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_attention_heads,
            num_key_value_heads=cfg.num_query_groups, head_dim=cfg.kv_channels,
            hidden_activation="gelu_pytorch_tanh" if cfg.openai_gelu else "gelu",
            max_position_embeddings=cfg.max_position_embeddings, rms_norm_eps=cfg.layernorm_epsilon,
            tie_word_embeddings=cfg.share_embeddings_and_output_weights, dtype=precision_to_hf_dtype(cfg),
            query_pre_attn_scalar=_query_pre_attn_scalar(cfg, hf),
            attn_logit_softcapping=cfg.attn_logit_softcapping, final_logit_softcapping=cfg.final_logit_softcapping,
            attention_bias=False, **rope_to_hf(cfg), **windows,
        )
        if hf["sliding_window"] is None:
            hf["sliding_window"] = cfg.max_position_embeddings  # HF's Gemma always has one; this one never bites
        if self.version == 3:
            hf["rope_local_base_freq"] = cfg.rotary_base_local or cfg.rotary_base
            flags = [t == "sliding_attention" for t in windows["layer_types"]]
            period = next((p for p in range(1, cfg.num_layers + 2)
                           if flags == [bool((i + 1) % p) for i in range(cfg.num_layers)]), None)
            if period is not None:  # transformers 4 reads the pattern, not layer_types
                hf["sliding_window_pattern"] = period
        return hf

    def default_config(self, **sizes: Any) -> ModelConfig:
        base = dict(num_layers=2, hidden_size=64, num_attention_heads=4, num_query_groups=None, ffn_hidden_size=None,
                    kv_channels=None, encoder_seq_length=512)
        base.update({k: v for k, v in sizes.items() if v is not None})
        h, n = base["hidden_size"], base["num_layers"]
        head_dim = base["kv_channels"] or h // base["num_attention_heads"]
        hf = {"num_hidden_layers": n, "hidden_size": h, "intermediate_size": base["ffn_hidden_size"] or 4 * h,
              "num_attention_heads": base["num_attention_heads"], "num_key_value_heads": base["num_query_groups"],
              "head_dim": head_dim, "vocab_size": base.get("vocab_size") or 256,
              "max_position_embeddings": base["encoder_seq_length"], "dtype": "float32",
              "sliding_window": max(base["encoder_seq_length"] // 4, 1), "query_pre_attn_scalar": head_dim}
        if self.version == 2:
            hf.update(attn_logit_softcapping=50.0, final_logit_softcapping=30.0, rope_theta=10000.0)
        else:
            hf.update(rope_theta=1_000_000.0, rope_local_base_freq=10000.0, sliding_window_pattern=2)
        fields = self._config_fields(hf)
        fields.update(hf_config=None, vocab_size=None, make_vocab_size_divisible_by=128,
                      encoder_seq_length=base["encoder_seq_length"])
        fields.update({k: v for k, v in sizes.items() if v is not None and k not in hf})
        return ModelConfig(**fields)

    # -- weights ----------------------------------------------------------------------------------
    def _attention_in(self, cfg: ModelConfig, get: Getter, hf: str, mc: str) -> Iterator[tuple[str, torch.Tensor]]:
        yield from super()._attention_in(cfg, get, hf, mc)
        yield f"{mc}self_attention.post_layernorm.weight", get(f"{hf}post_attention_layernorm.weight")
        if cfg.qk_layernorm:
            yield f"{mc}self_attention.q_layernorm.weight", get(f"{hf}self_attn.q_norm.weight")
            yield f"{mc}self_attention.k_layernorm.weight", get(f"{hf}self_attn.k_norm.weight")

    def _attention_out(self, cfg: ModelConfig, get: Getter, hf: str, mc: str) -> Iterator[tuple[str, torch.Tensor]]:
        yield from super()._attention_out(cfg, get, hf, mc)
        yield f"{hf}post_attention_layernorm.weight", get(f"{mc}self_attention.post_layernorm.weight")
        if cfg.qk_layernorm:
            yield f"{hf}self_attn.q_norm.weight", get(f"{mc}self_attention.q_layernorm.weight")
            yield f"{hf}self_attn.k_norm.weight", get(f"{mc}self_attention.k_layernorm.weight")

    def _mlp_in(self, cfg: ModelConfig, get: Getter, hf: str, mc: str, layer: int
                ) -> Iterator[tuple[str, torch.Tensor]]:
        import torch

        yield f"{mc}mlp.linear_fc1.layer_norm_weight", get(f"{hf}pre_feedforward_layernorm.weight")
        yield f"{mc}mlp.linear_fc1.weight", torch.cat([get(f"{hf}mlp.gate_proj.weight"), get(f"{hf}mlp.up_proj.weight")])
        yield f"{mc}mlp.linear_fc2.weight", get(f"{hf}mlp.down_proj.weight")
        yield f"{mc}mlp.post_layernorm.weight", get(f"{hf}post_feedforward_layernorm.weight")

    def _mlp_out(self, cfg: ModelConfig, get: Getter, hf: str, mc: str, layer: int
                 ) -> Iterator[tuple[str, torch.Tensor]]:
        yield f"{hf}pre_feedforward_layernorm.weight", get(f"{mc}mlp.linear_fc1.layer_norm_weight")
        gate, up = get(f"{mc}mlp.linear_fc1.weight").chunk(2, dim=0)
        yield f"{hf}mlp.gate_proj.weight", gate.contiguous()
        yield f"{hf}mlp.up_proj.weight", up.contiguous()
        yield f"{hf}mlp.down_proj.weight", get(f"{mc}mlp.linear_fc2.weight")
        yield f"{hf}post_feedforward_layernorm.weight", get(f"{mc}mlp.post_layernorm.weight")


def _query_pre_attn_scalar(cfg: ModelConfig, hf: dict[str, Any]) -> float | int:
    """The HF value whose ^-½ is ``softmax_scale``: the original one when it still is, else computed."""
    original = hf.get("query_pre_attn_scalar")
    scale = cfg.softmax_scale or cfg.kv_channels ** -0.5
    if original and float(original) ** -0.5 == scale:
        return original
    value = scale ** -2
    return round(value) if abs(value - round(value)) < 1e-6 else value


def _cap(hf: dict[str, Any], key: str) -> float | None:
    value = hf.get(key)
    return float(value) if value else None
