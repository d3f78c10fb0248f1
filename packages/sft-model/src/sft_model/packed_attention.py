"""Model inputs for packed rows: several sequences share one row and must not see each other.

A row is described by the lengths of its sequences (tokens after the shift). Whatever follows the
last sequence is padding and is treated as one more pseudo-sequence, as the reference does, so
real tokens never attend to it. Two forms, one per attention backend:

- local spec (CPU, or GPU without Transformer Engine): per-sequence position ids and a
  block-diagonal causal ``attention_mask`` of shape [b, 1, s, s] (True = blocked);
- Transformer Engine: ``PackedSeqParams`` in THD layout with ``cu_seqlens`` (one row per micro-batch).

RoPE on the local path uses the row's absolute positions; with the block-diagonal mask each
sequence sees only relative offsets within itself, which RoPE makes identical to restarting at 0.
Learned absolute positions (GPT-2) take the per-sequence ``position_ids`` directly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def _row_ids(lengths: Sequence[int], seq_len: int, row: int) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = [int(n) for n in lengths]
    if any(n <= 0 for n in lengths):
        raise ValueError(f"row {row}: sequence lengths must be positive, got {lengths}")
    total = sum(lengths)
    if total > seq_len:
        raise ValueError(f"row {row}: sequence lengths sum to {total} > {seq_len}")
    if total < seq_len:
        lengths = [*lengths, seq_len - total]
    sizes = torch.tensor(lengths, dtype=torch.int64)
    seq_id = torch.repeat_interleave(torch.arange(len(lengths)), sizes)
    starts = torch.repeat_interleave(torch.cumsum(sizes, 0) - sizes, sizes)
    return seq_id, torch.arange(seq_len) - starts


def packed_position_ids(lengths_per_row: Sequence[Sequence[int]], seq_len: int) -> torch.Tensor:
    """[b, s] position ids restarting at 0 at every sequence start."""
    return torch.stack([_row_ids(lengths, seq_len, i)[1] for i, lengths in enumerate(lengths_per_row)])


def block_causal_mask(lengths_per_row: Sequence[Sequence[int]], seq_len: int) -> torch.Tensor:
    """[b, 1, s, s] boolean mask, True where attention is blocked: causal within a sequence, nothing across."""
    seq_id = torch.stack([_row_ids(lengths, seq_len, i)[0] for i, lengths in enumerate(lengths_per_row)])
    same = seq_id[:, :, None] == seq_id[:, None, :]
    causal = torch.ones(seq_len, seq_len, dtype=torch.bool).tril()
    return ~(same & causal)[:, None]


def packed_seq_params(lengths: Sequence[int], seq_len: int, device=None):
    """``PackedSeqParams`` (THD) for one packed row, for the Transformer Engine attention."""
    from megatron.core.packed_seq_params import PackedSeqParams

    lengths = [int(n) for n in lengths]
    if sum(lengths) < seq_len:
        lengths.append(seq_len - sum(lengths))
    cu = torch.zeros(len(lengths) + 1, dtype=torch.int32, device=device)
    cu[1:] = torch.cumsum(torch.tensor(lengths, dtype=torch.int32, device=device), 0)
    longest = max(lengths)
    return PackedSeqParams(qkv_format="thd", cu_seqlens_q=cu, cu_seqlens_kv=cu, cu_seqlens_q_padded=cu,
                           cu_seqlens_kv_padded=cu, max_seqlen_q=longest, max_seqlen_kv=longest)


def packed_model_inputs(lengths_per_row: Sequence[Sequence[int]], seq_len: int, *, use_te: bool = False) -> dict:
    """Keyword arguments for ``GPTModel.forward`` besides ``input_ids``: positions plus mask or THD params."""
    position_ids = packed_position_ids(lengths_per_row, seq_len)
    if use_te:
        if len(lengths_per_row) != 1:
            raise ValueError("THD packed batches hold one row per micro-batch")
        return {"position_ids": position_ids, "attention_mask": None,
                "packed_seq_params": packed_seq_params(lengths_per_row[0], seq_len)}
    return {"position_ids": position_ids, "attention_mask": block_causal_mask(lengths_per_row, seq_len)}
