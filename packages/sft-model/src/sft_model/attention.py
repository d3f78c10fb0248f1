"""A core attention on ``torch.nn.functional.scaled_dot_product_attention``, swapped into the local
layer spec through ``ModuleSpec`` in place of megatron's ``DotProductAttention``.

Upstream's local attention materialises [b·heads, s, s] scores with baddbmm and a separate softmax;
SDPA fuses both and picks the fastest kernel for the device (about twice as fast on CPU, which is
what the spike measured). It takes the same constructor and forward arguments, so the spec swap is
the only change. Masks follow megatron's convention: ``True`` means "may not attend".

Two features of newer families live here too, because megatron-core's local attention has neither:
- a sliding window on the layers ``config.window_size``/``window_attn_skip_freq`` select (the same
  rule Transformer Engine applies when it is given ``window_size``);
- attention-logit soft-capping (Gemma 2: scores become c·tanh(s/c) before mask and softmax), which
  SDPA cannot fuse, so those layers compute scores explicitly. Transformer Engine has no
  soft-capping either: the TE spec takes this class as its core attention for such models.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from megatron.core import tensor_parallel
from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.module import MegatronModule
from megatron.core.transformer.utils import is_layer_window_attention
from megatron.core.utils import divide


def window_blocked(sq: int, sk: int, left: int | None, device=None) -> torch.Tensor:
    """[sq, sk] True where a query may not attend: the future, and keys more than ``left`` behind.

    Queries are the last ``sq`` of ``sk`` positions (a KV cache holds the earlier keys), so query i
    sits at position sk − sq + i; ``left=None`` is plain causal attention.
    """
    q = torch.arange(sk - sq, sk, device=device)[:, None]
    k = torch.arange(sk, device=device)[None, :]
    blocked = k > q
    if left is not None:
        blocked |= (q - k) > left
    return blocked


class SDPAttention(MegatronModule):
    """Core attention: softmax(q·kᵀ/√d + mask)·v for [s, b, heads, d] inputs, GQA without copies."""

    def __init__(self, config, layer_number: int, attn_mask_type: AttnMaskType, attention_type: str,
                 attention_dropout: float | None = None, softmax_scale: float | None = None,
                 cp_comm_type: str | None = None, pg_collection=None, softcap: float | None = None):
        super().__init__(config=config)
        if config.context_parallel_size != 1:
            raise ValueError("SDPAttention does not support context parallelism")
        if pg_collection is None:
            from megatron.core.process_groups_config import ProcessGroupCollection

            pg_collection = ProcessGroupCollection.use_mpu_process_groups(required_pgs=["tp"])
        tp = pg_collection.tp.size()
        self.attn_mask_type = attn_mask_type
        self.heads = divide(config.num_attention_heads, tp)
        self.groups = divide(config.num_query_groups, tp)
        self.hidden_per_partition = divide(config.kv_channels * config.num_attention_heads, tp)
        self.softmax_scale = softmax_scale if softmax_scale is not None else 1.0 / math.sqrt(config.kv_channels)
        self.dropout_p = config.attention_dropout if attention_dropout is None else attention_dropout
        slides = is_layer_window_attention(config.window_size, config.window_attn_skip_freq, layer_number)
        self.window_left = config.window_size[0] if slides and config.window_size[0] >= 0 else None
        self.softcap = softcap

    def forward(self, query, key, value, attention_mask, attn_mask_type=None, attention_bias=None,
                packed_seq_params=None):
        if packed_seq_params is not None:
            raise ValueError("SDPAttention takes packed rows as a block-diagonal attention_mask, not THD params")
        if attention_bias is not None:
            raise ValueError("SDPAttention does not take an attention bias")
        sq, b = query.shape[0], query.shape[1]
        # [s, b, h, d] -> [b, h, s, d]
        q, k, v = (t.permute(1, 2, 0, 3) for t in (query, key, value))
        mask_type = attn_mask_type if attn_mask_type is not None else self.attn_mask_type
        blocked = attention_mask
        if self.window_left is not None or (self.softcap is not None and blocked is None):
            # an explicit mask: the window (or causality, which the explicit-scores path needs spelled out)
            extra = window_blocked(sq, k.shape[2], self.window_left, q.device)
            blocked = extra if blocked is None else blocked | extra
        causal = blocked is None and mask_type == AttnMaskType.causal
        dropout = self.dropout_p if self.training else 0.0
        ctx = (tensor_parallel.get_cuda_rng_tracker().fork()
               if dropout > 0 and not self.config.sequence_parallel else contextlib.nullcontext())
        with ctx:
            if self.softcap is None:
                out = F.scaled_dot_product_attention(
                    q, k, v, attn_mask=None if blocked is None else ~blocked, dropout_p=dropout, is_causal=causal,
                    scale=self.softmax_scale, enable_gqa=self.heads != self.groups)
            else:
                out = self._softcapped(q, k, v, blocked, dropout)
        # [b, h, s, d] -> [s, b, h·d]
        return out.permute(2, 0, 1, 3).reshape(sq, b, self.hidden_per_partition)

    def _softcapped(self, q, k, v, blocked, dropout: float):
        """Scores, c·tanh(s/c), mask, softmax in fp32, dropout, ·v (as transformers' eager Gemma 2)."""
        if self.heads != self.groups:  # megatron keeps each group's query heads together
            k = k.repeat_interleave(self.heads // self.groups, dim=1)
            v = v.repeat_interleave(self.heads // self.groups, dim=1)
        scores = torch.matmul(q, k.transpose(-1, -2)) * self.softmax_scale
        scores = torch.tanh(scores / self.softcap) * self.softcap
        if blocked is not None:
            scores = scores.masked_fill(blocked, float("-inf"))
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        if dropout:
            probs = F.dropout(probs, p=dropout)
        return torch.matmul(probs, v)
