"""Model wrapping and the optimizer: megatron-core DDP and AdamW with clipping and weight decay."""

from __future__ import annotations

import torch

from sft_trainer.config.schema import TrainConfig


def wrap_ddp(model_chunks, use_distributed_optimizer: bool):
    """megatron-core DistributedDataParallel around each chunk, wired into the schedules."""
    from megatron.core.distributed import (
        DistributedDataParallel,
        DistributedDataParallelConfig,
        finalize_model_grads,
    )
    from megatron.core.utils import get_model_config

    ddp_config = DistributedDataParallelConfig(
        grad_reduce_in_fp32=True, overlap_grad_reduce=False, use_distributed_optimizer=use_distributed_optimizer,
    )
    wrapped = [
        DistributedDataParallel(config=get_model_config(chunk), ddp_config=ddp_config, module=chunk)
        for chunk in model_chunks
    ]
    config = get_model_config(wrapped[0])
    config.no_sync_func = wrapped[0].no_sync if len(wrapped) == 1 else [m.no_sync for m in wrapped]
    config.finalize_model_grads_func = finalize_model_grads
    return wrapped


def build_optimizer(model_chunks, cfg: TrainConfig, dtype: torch.dtype, use_distributed_optimizer: bool):
    """AdamW (megatron-core's optimizer); biases and norms get no weight decay."""
    from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer

    optim = cfg.model.optim
    config = OptimizerConfig(
        optimizer="adam", lr=optim.lr, min_lr=optim.sched.min_lr, weight_decay=optim.weight_decay,
        adam_beta1=optim.betas[0], adam_beta2=optim.betas[1], adam_eps=optim.eps,
        clip_grad=cfg.trainer.sft.gradient_clip_val, bf16=dtype == torch.bfloat16, params_dtype=dtype,
        use_distributed_optimizer=use_distributed_optimizer,
    )
    return get_megatron_optimizer(config, model_chunks)


def set_lr(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def training_dtype(cfg: TrainConfig) -> torch.dtype:
    """bf16 on a GPU when asked; fp32 otherwise (bf16 is ~20× slower than fp32 on these CPUs)."""
    if torch.cuda.is_available() and str(cfg.trainer.precision).startswith("bf16"):
        return torch.bfloat16
    return torch.float32
