"""One optimizer step and one validation pass on megatron-core's forward-backward schedules.

Loss normalisation: the objective is the mean over every trained token of the *global* batch.
Before the schedule runs, the trained-token count ``N`` of the global batch is summed over the
micro-batches and data-parallel ranks. Each micro-batch's loss is ``sum(loss · mask) / N``, scaled
by ``num_microbatches × dp`` because megatron-core divides a returned loss by the number of
micro-batches and DDP averages gradients over data-parallel ranks. The gradient is then exactly
that of the global token mean, however the batch is split (the reference averaged per-micro-batch
means, which weights tokens differently under gradient accumulation and packing).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.distributed as dist

from sft_trainer.distributed import Topology


@dataclass
class StepResult:
    loss: float
    """Global token-mean loss of the batch."""
    trained_tokens: int
    """Trained (label-masked) tokens in the global batch."""
    tokens: int
    """Non-padding positions in the global batch."""


def _lengths(batch: dict[str, torch.Tensor]) -> list[list[int]]:
    """Per row, the segment lengths from the collate's cu_seqlens (trailing padding is a segment)."""
    rows = []
    for ends, count in zip(batch["cu_seqlens"].tolist(), batch["cu_seqlens_argmin"].tolist(), strict=True):
        ends = ends[:count]
        lengths = [b - a for a, b in itertools.pairwise(ends)]
        rows.append(lengths)
    return rows


def model_inputs(batch: dict[str, torch.Tensor], use_te: bool, device: torch.device) -> dict[str, Any]:
    """GPTModel keyword arguments: tokens, labels, restarted positions, block-diagonal attention."""
    from sft_model.packed_attention import packed_model_inputs

    seq_len = batch["tokens"].shape[1]
    # The trailing padding is its own pseudo-sequence in cu_seqlens, so rows are fully covered.
    extra = packed_model_inputs(_lengths(batch), seq_len, use_te=use_te)
    inputs = {"input_ids": batch["tokens"], "labels": batch["labels"], **extra}
    return {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()}


def count_tokens(microbatches: list[dict[str, torch.Tensor]], topo: Topology) -> tuple[int, int]:
    """(trained tokens, non-padding tokens) of the global batch, summed over data-parallel ranks."""
    local = torch.tensor([
        sum(float(mb["loss_mask"].sum()) for mb in microbatches),
        sum(int(mb["num_tokens"]) for mb in microbatches),
    ], dtype=torch.float64)
    dist.all_reduce(local, group=topo.dp_group)
    return int(local[0]), int(local[1])


def _loss_func(loss_mask: torch.Tensor, scale: float, output: torch.Tensor):
    losses = output.float()
    loss_sum = (losses * loss_mask).sum()
    return loss_sum * scale, {"loss_sum": loss_sum.detach()}


def run_schedule(model_chunks, microbatches, topo: Topology, *, forward_only: bool, use_te: bool,
                 trained_tokens: int) -> float:
    """Run megatron-core's schedule over ``microbatches``; returns the global sum of token losses."""
    from megatron.core.pipeline_parallel import get_forward_backward_func

    device = next(model_chunks[0].parameters()).device
    scale = len(microbatches) * topo.dp_size / max(trained_tokens, 1)

    def forward_step(data_iterator, model):
        batch = next(data_iterator)
        inputs = model_inputs(batch, use_te, device)
        output = model(**inputs)
        return output, partial(_loss_func, batch["loss_mask"].to(device), scale)

    seq_len = microbatches[0]["tokens"].shape[1]
    losses = get_forward_backward_func()(
        forward_step_func=forward_step, data_iterator=iter(microbatches), model=model_chunks,
        num_microbatches=len(microbatches), seq_length=seq_len,
        micro_batch_size=microbatches[0]["tokens"].shape[0], forward_only=forward_only,
    )
    local = sum(float(item["loss_sum"]) for item in losses) if losses else 0.0
    # Only last-stage ranks hold losses; TP ranks of a stage hold the same one: count tp rank 0.
    total = torch.tensor([local if (topo.is_last_stage and topo.tp_rank == 0) else 0.0], dtype=torch.float64)
    dist.all_reduce(total)
    return float(total[0])


def train_step(model_chunks, optimizer, microbatches, topo: Topology, *, use_te: bool) -> tuple[StepResult, Any]:
    """Forward-backward over the global batch; returns the result and the optimizer (not stepped)."""
    for chunk in model_chunks:
        chunk.zero_grad_buffer()
    optimizer.zero_grad()
    trained, tokens = count_tokens(microbatches, topo)
    loss_sum = run_schedule(model_chunks, microbatches, topo, forward_only=False, use_te=use_te,
                            trained_tokens=trained)
    return StepResult(loss_sum / max(trained, 1), trained, tokens), optimizer


@torch.no_grad()
def evaluate(model_chunks, batches, topo: Topology, *, use_te: bool) -> tuple[float, int]:
    """Token-mean loss over ``batches`` (iterable of micro-batch lists) and the trained-token count."""
    for chunk in model_chunks:
        chunk.eval()
    loss_sum, trained = 0.0, 0
    try:
        for microbatches in batches:
            count, _ = count_tokens(microbatches, topo)
            loss_sum += run_schedule(model_chunks, microbatches, topo, forward_only=True, use_te=use_te,
                                     trained_tokens=count)
            trained += count
    finally:
        for chunk in model_chunks:
            chunk.train()
    return (loss_sum / trained if trained else float("nan")), trained
