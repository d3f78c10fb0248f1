"""One optimizer step and one validation pass on megatron-core's forward-backward schedules.

Loss normalisation: the objective is the mean over every trained token of the *global* batch.
Before the schedule runs, the trained-token count ``N`` of the global batch is summed over the
micro-batches and data-parallel ranks. Each micro-batch's loss is ``sum(loss · mask) / N``, scaled
by ``num_microbatches × dp`` because megatron-core divides a returned loss by the number of
micro-batches and DDP averages gradients over data-parallel ranks. The gradient is then exactly
that of the global token mean, however the batch is split (the reference averaged per-micro-batch
means, which weights tokens differently under gradient accumulation and packing).

Mixture-of-experts models add the routers' load-balancing loss as megatron-core (and so the
reference) does: each MoE layer's loss on each micro-batch, times ``moe_aux_loss_coeff``, enters the
gradient through ``MoEAuxLossAutoScaler`` scaled by 1/num_microbatches (the schedule sets it), and
DDP averages it over data-parallel ranks: the mean over the global batch's micro-batches. For a
given micro-batch size that does not depend on how they are spread over accumulation steps and
ranks. Unlike the reference, padding positions are left out of it (megatron's ``padding_mask``),
so it does not depend on how far rows are padded either. It is logged unweighted, per MoE layer,
as megatron-core's tracker reports it.
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
    moe_aux_loss: float | None = None
    """MoE models: the routers' load-balancing loss (mean over MoE layers and micro-batches, before
    ``moe_aux_loss_coeff``); None for dense models."""


def _lengths(batch: dict[str, torch.Tensor]) -> list[list[int]]:
    """Per row, the segment lengths from the collate's cu_seqlens (trailing padding is a segment)."""
    rows = []
    for ends, count in zip(batch["cu_seqlens"].tolist(), batch["cu_seqlens_argmin"].tolist(), strict=True):
        ends = ends[:count]
        lengths = [b - a for a, b in itertools.pairwise(ends)]
        rows.append(lengths)
    return rows


def model_inputs(batch: dict[str, torch.Tensor], use_te: bool, device: torch.device, *,
                 moe: bool = False) -> dict[str, Any]:
    """GPTModel keyword arguments: tokens, labels, restarted positions, block-diagonal attention;
    for MoE models a padding mask, so that padding is not counted in the routers' load-balancing
    loss (which then depends on the real tokens only, not on how far a row is padded)."""
    from sft_model.packed_attention import packed_model_inputs

    seq_len = batch["tokens"].shape[1]
    # The trailing padding is its own pseudo-sequence in cu_seqlens, so rows are fully covered.
    extra = packed_model_inputs(_lengths(batch), seq_len, use_te=use_te)
    inputs = {"input_ids": batch["tokens"], "labels": batch["labels"], **extra}
    if moe:  # megatron's convention: True = padding
        inputs["padding_mask"] = torch.arange(seq_len)[None, :] >= batch["row_tokens"][:, None]
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
    moe = _moe_config(model_chunks) is not None

    def forward_step(data_iterator, model):
        batch = next(data_iterator)
        inputs = model_inputs(batch, use_te, device, moe=moe)
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


def _moe_config(model_chunks):
    from megatron.core.utils import get_model_config

    config = get_model_config(model_chunks[0])
    return config if config.num_moe_experts else None


def _moe_aux_loss(config, num_microbatches: int) -> float:
    """The step's load-balancing loss from megatron-core's tracker (reduced over PP, TP and DP ranks,
    which every rank must call), then cleared for the next step."""
    from megatron.core.transformer.moe.moe_logging import get_moe_metrics_tracker

    totals: dict[str, Any] = {}
    get_moe_metrics_tracker().report(
        loss_scale=1.0 / num_microbatches, iteration=0, force_initialize=True, track_names=["load_balancing_loss"],
        num_layers=config.num_layers, moe_layer_freq=config.moe_layer_freq, total_loss_dict=totals)
    return float(totals["load_balancing_loss"])


def train_step(model_chunks, optimizer, microbatches, topo: Topology, *, use_te: bool) -> tuple[StepResult, Any]:
    """Forward-backward over the global batch; returns the result and the optimizer (not stepped)."""
    for chunk in model_chunks:
        chunk.zero_grad_buffer()
    optimizer.zero_grad()
    moe = _moe_config(model_chunks)
    if moe is not None:
        from megatron.core.transformer.moe.moe_logging import get_moe_metrics_tracker
        from megatron.core.transformer.moe.moe_utils import MoEAuxLossAutoScaler

        get_moe_metrics_tracker().clear()
        # a backward outside the schedules (a test, an evaluation hook) leaves megatron's aux-loss scale
        # a 0-d tensor, into which the schedule then fails to copy its [1]-shaped one: start afresh
        MoEAuxLossAutoScaler.main_loss_backward_scale = None
    trained, tokens = count_tokens(microbatches, topo)
    loss_sum = run_schedule(model_chunks, microbatches, topo, forward_only=False, use_te=use_te,
                            trained_tokens=trained)
    aux = _moe_aux_loss(moe, len(microbatches)) if moe is not None else None
    return StepResult(loss_sum / max(trained, 1), trained, tokens, aux), optimizer


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
