"""Architecture options beyond the Llama/GPT-2 core: what Qwen3, Mistral, Phi-3, Gemma 2/3 and the
mixture-of-experts families switch on. All are "(sft)" additions to ``model_config.yaml``, named
after megatron-core's ``TransformerConfig`` fields (and NeMo 2's) where those exist.

``ModelConfig`` inherits these fields; they are keyword-only, so their defaults do not disturb the
order of the reference's required fields. A field at its default is left out of the YAML.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sft_model.errors import ModelConfigError

ROUTER_LOAD_BALANCING = ("aux_loss", "none")


@dataclass(kw_only=True)
class ArchitectureOptions:
    qk_layernorm: bool = False
    """(sft) Normalise each head's query and key (Qwen3, Gemma 3), with the model's norm type."""
    layernorm_zero_centered_gamma: bool = False
    """(sft) Norm weights are stored as gamma − 1 (every norm computes x̂·(1 + w); Gemma)."""
    post_sublayer_norms: bool = False
    """(sft) A norm on the attention output and on the MLP output before each residual add (Gemma 2/3)."""
    softmax_scale: float | None = None
    """(sft) Attention scale; None means 1/√kv_channels (Gemma: query_pre_attn_scalar^-½)."""
    attn_logit_softcapping: float | None = None
    """(sft) Attention scores become c·tanh(s/c) before the mask and softmax (Gemma 2)."""
    final_logit_softcapping: float | None = None
    """(sft) Output logits become c·tanh(z/c) (Gemma 2)."""
    embedding_multiplier: float | None = None
    """(sft) The input embeddings are multiplied by this (Gemma: √hidden_size, in the weights' dtype)."""
    window_size: list[int] | None = None
    """(sft) Sliding-window attention as megatron-core's ``(left, right)``: a query at i sees keys
    i−left … i+right (right is 0 for a decoder); HF's ``sliding_window`` w is left = w − 1."""
    window_attn_skip_freq: int | list[int] | None = None
    """(sft) Which layers slide (megatron-core's field): None all; N every layer but each N-th;
    a list with one 1 (sliding) or 0 (global) per layer."""
    rotary_base_local: float | None = None
    """(sft) RoPE base of the sliding-window layers when it differs from ``rotary_base`` (Gemma 3)."""
    num_moe_experts: int | None = None
    """Experts per MoE layer (the reference's key); None: dense MLPs."""
    moe_router_topk: int = 2
    """Experts each token is routed to."""
    moe_ffn_hidden_size: int | None = None
    """(sft) Each expert's MLP width; None means ``ffn_hidden_size``."""
    moe_router_pre_softmax: bool = False
    """(sft) Softmax over all experts, then the top-k weights as they are (Qwen3-MoE with
    norm_topk_prob false); false: softmax over the top-k scores only (Mixtral; = renormalised)."""
    moe_aux_loss_coeff: float = 0.0
    """Weight of the router's load-balancing loss in the training objective (the reference's key)."""
    moe_router_load_balancing_type: str = "aux_loss"
    """``aux_loss`` (Switch-style, as transformers computes it) or ``none``."""
    moe_layer_freq: int | list[int] = 1
    """(sft) Which layers are MoE (megatron-core's field): 1 all; a list with one 1 (MoE) or 0 (dense MLP of
    ``ffn_hidden_size``) per layer."""

    def _validate_architecture(self) -> None:
        for name in ("softmax_scale", "attn_logit_softcapping", "final_logit_softcapping", "embedding_multiplier",
                     "rotary_base_local"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value <= 0):
                raise ModelConfigError(f"{name}: expected a positive number, got {value!r}")
        if self.window_size is not None:
            w = self.window_size
            if (not isinstance(w, list | tuple) or len(w) != 2 or not all(isinstance(x, int) for x in w)
                    or w[0] < 0 or w[1] != 0):
                raise ModelConfigError(f"window_size: expected [left, 0] with left ≥ 0, got {w!r}")
            self.window_size = [int(w[0]), 0]
        self._check_layer_pattern("window_attn_skip_freq", self.window_attn_skip_freq, allow_none=True)
        if self.num_moe_experts is not None:
            self._validate_moe()

    def _validate_moe(self) -> None:
        n = self.num_moe_experts
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ModelConfigError(f"num_moe_experts: expected a positive integer, got {n!r}")
        if isinstance(self.moe_router_topk, bool) or not 1 <= self.moe_router_topk <= n:
            raise ModelConfigError(f"moe_router_topk: expected 1..{n} (num_moe_experts), got {self.moe_router_topk!r}")
        if self.moe_ffn_hidden_size is not None and (isinstance(self.moe_ffn_hidden_size, bool)
                                                     or self.moe_ffn_hidden_size <= 0):
            raise ModelConfigError(f"moe_ffn_hidden_size: expected a positive integer, got {self.moe_ffn_hidden_size!r}")
        if not isinstance(self.moe_aux_loss_coeff, int | float) or self.moe_aux_loss_coeff < 0:
            raise ModelConfigError(f"moe_aux_loss_coeff: expected a number ≥ 0, got {self.moe_aux_loss_coeff!r}")
        if self.moe_router_load_balancing_type not in ROUTER_LOAD_BALANCING:
            raise ModelConfigError(f"moe_router_load_balancing_type: {self.moe_router_load_balancing_type!r} is not one "
                                   f"of {', '.join(ROUTER_LOAD_BALANCING)}")
        self._check_layer_pattern("moe_layer_freq", self.moe_layer_freq, allow_none=False)

    def _check_layer_pattern(self, name: str, value: Any, *, allow_none: bool) -> None:
        if value is None and allow_none:
            return
        if isinstance(value, list):
            if len(value) != self.num_layers or any(v not in (0, 1) or isinstance(v, bool) for v in value):
                raise ModelConfigError(f"{name}: expected one 0 or 1 per layer ({self.num_layers}), got {value!r}")
        elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ModelConfigError(f"{name}: expected a positive integer or a list of 0/1 per layer, got {value!r}")

    # -- derived ----------------------------------------------------------------------------------
    @property
    def is_moe(self) -> bool:
        return self.num_moe_experts is not None

    def layer_slides(self, layer_number: int) -> bool:
        """Whether the (1-based) layer uses the sliding window (megatron-core's rule)."""
        if not self.window_size:
            return False
        freq = self.window_attn_skip_freq
        if freq is None:
            return True
        if isinstance(freq, int):
            return layer_number % freq != 0
        return bool(freq[layer_number - 1])

    def layer_is_moe(self, layer_number: int) -> bool:
        """Whether the (1-based) layer has experts (megatron-core's ``moe_layer_freq`` rule)."""
        if not self.is_moe:
            return False
        freq = self.moe_layer_freq
        if isinstance(freq, int):
            return (layer_number - 1) % freq == 0
        return bool(freq[layer_number - 1])


ARCHITECTURE_DEFAULTS = {
    "qk_layernorm": False, "layernorm_zero_centered_gamma": False, "post_sublayer_norms": False,
    "softmax_scale": None, "attn_logit_softcapping": None, "final_logit_softcapping": None,
    "embedding_multiplier": None, "window_size": None, "window_attn_skip_freq": None, "rotary_base_local": None,
    "num_moe_experts": None, "moe_router_topk": 2, "moe_ffn_hidden_size": None, "moe_router_pre_softmax": False,
    "moe_aux_loss_coeff": 0.0, "moe_router_load_balancing_type": "aux_loss", "moe_layer_freq": 1,
}
"""Fields written to YAML only when they differ from these (files of the reference stay as they were)."""

FLOAT_FIELDS = ("softmax_scale", "attn_logit_softcapping", "final_logit_softcapping", "embedding_multiplier",
                "rotary_base_local", "moe_aux_loss_coeff")
INT_FIELDS = ("num_moe_experts", "moe_router_topk", "moe_ffn_hidden_size")
