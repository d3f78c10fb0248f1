"""Attention and MLP sublayers for features megatron-core's ``SelfAttention`` and ``MLP`` lack,
selected in the layer spec (``sft_model.specs``) and built by megatron like its own modules:

- ``post_norm``: a norm on the sublayer's output before the residual add (Gemma 2/3 "sandwich"
  norms). It sits outside ``linear_proj``/``linear_fc2``, so a LoRA adapter on those layers adds
  its update before the norm, as it does in the Hugging Face model.
- ``local_rotary_base`` (attention only): sliding-window layers rotate with their own RoPE base
  (Gemma 3: 10 000 locally, 1 000 000 globally). megatron computes one rotary table per forward
  for all layers; such a layer swaps in a table of the same length from its own base, so caches,
  offsets and packing treat it exactly as the shared one.

Both are submodules (norm weights under ``…self_attention.post_layernorm.weight`` and
``…mlp.post_layernorm.weight``), so checkpoints, TP and PP handle them like any replicated norm.
"""

from __future__ import annotations

from megatron.core.transformer.attention import SelfAttention
from megatron.core.transformer.mlp import MLP
from megatron.core.transformer.spec_utils import build_module
from megatron.core.transformer.utils import is_layer_window_attention

from sft_model.norms import RMSNorm


def _post_norm(module, norm, config) -> None:
    module.post_layernorm = (None if norm is None else
                             build_module(norm, config=config, hidden_size=config.hidden_size,
                                          eps=config.layernorm_epsilon))


def _apply_post_norm(module, output, bias):
    if module.post_layernorm is None:
        return output, bias
    if bias is not None:
        output = output + bias
    return module.post_layernorm(output), None


class FamilySelfAttention(SelfAttention):
    """megatron's ``SelfAttention`` with an optional post-attention norm and local RoPE base."""

    def __init__(self, config, submodules, layer_number: int, *args, post_norm: bool = False,
                 local_rotary_base: float | None = None, rotary_percent: float = 1.0, **kwargs):
        super().__init__(config, submodules, layer_number, *args, **kwargs)
        _post_norm(self, RMSNorm if post_norm else None, config)
        self.local_rotary = None
        if local_rotary_base is not None and is_layer_window_attention(
                config.window_size, config.window_attn_skip_freq, self.layer_number):
            from megatron.core.models.common.embeddings.rotary_pos_embedding import RotaryEmbedding

            self.local_rotary = RotaryEmbedding(
                kv_channels=config.kv_channels, rotary_percent=rotary_percent,
                rotary_interleaved=config.rotary_interleaved, rotary_base=local_rotary_base,
                use_cpu_initialization=config.use_cpu_initialization)

    def forward(self, hidden_states, attention_mask, *args, rotary_pos_emb=None, **kwargs):
        if self.local_rotary is not None and rotary_pos_emb is not None:
            length = (rotary_pos_emb[0] if isinstance(rotary_pos_emb, tuple) else rotary_pos_emb).shape[0]
            rotary_pos_emb = self.local_rotary(length)
        output, bias = super().forward(hidden_states, attention_mask, *args, rotary_pos_emb=rotary_pos_emb, **kwargs)
        return _apply_post_norm(self, output, bias)


class PostNormMLP(MLP):
    """megatron's ``MLP`` followed by an ``RMSNorm`` on its output; in a spec as
    ``partial(PostNormMLP.as_mlp_submodule, submodules=…)`` like megatron's own MLP."""

    def __init__(self, config, submodules, *args, **kwargs):
        if kwargs.get("ffn_hidden_size") is None:  # what megatron's MLP falls back to, said explicitly
            kwargs["ffn_hidden_size"] = config.ffn_hidden_size
        super().__init__(config, submodules, *args, **kwargs)
        _post_norm(self, RMSNorm, config)

    def forward(self, hidden_states, *args, **kwargs):
        output, bias = super().forward(hidden_states, *args, **kwargs)
        return _apply_post_norm(self, output, bias)
