"""A core attention on ``torch.nn.functional.scaled_dot_product_attention``, swapped into the local
layer spec through ``ModuleSpec`` in place of megatron's ``DotProductAttention``.

Upstream's local attention materialises [b·heads, s, s] scores with baddbmm and a separate softmax;
SDPA fuses both and picks the fastest kernel for the device (about twice as fast on CPU, which is
what the spike measured). It takes the same constructor and forward arguments, so the spec swap is
the only change. Masks follow megatron's convention: ``True`` means "may not attend".
"""

from __future__ import annotations

import contextlib
import math

import torch.nn.functional as F
from megatron.core import tensor_parallel
from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.module import MegatronModule
from megatron.core.utils import divide


class SDPAttention(MegatronModule):
    """Core attention: softmax(q·kᵀ/√d + mask)·v for [s, b, heads, d] inputs, GQA without copies."""

    def __init__(self, config, layer_number: int, attn_mask_type: AttnMaskType, attention_type: str,
                 attention_dropout: float | None = None, softmax_scale: float | None = None,
                 cp_comm_type: str | None = None, pg_collection=None):
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
        causal = attention_mask is None and mask_type == AttnMaskType.causal
        mask = None if attention_mask is None else ~attention_mask
        dropout = self.dropout_p if self.training else 0.0
        ctx = (tensor_parallel.get_cuda_rng_tracker().fork()
               if dropout > 0 and not self.config.sequence_parallel else contextlib.nullcontext())
        with ctx:
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=causal, scale=self.softmax_scale,
                enable_gqa=self.heads != self.groups)
        # [b, h, s, d] -> [s, b, h·d]
        return out.permute(2, 0, 1, 3).reshape(sq, b, self.hidden_per_partition)
