"""How long a run is: steps per epoch, max steps, validation and save intervals (the reference's rules,
with its two known bugs fixed: max_epochs=-1/None with max_steps ran zero steps, and max_steps
was ignored when max_epochs ended later)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from sft_core import SftError

from sft_trainer.config.schema import SFTLoopConfig


def _limit(count: int, limit: int | float, what: str) -> int:
    if isinstance(limit, float):
        if not 0.0 <= limit <= 1.0:
            raise SftError(f"{what} as a fraction must be within 0..1, got {limit}")
        return int(count * limit)
    return min(count, limit)


@dataclass(frozen=True)
class Budget:
    steps_per_epoch: int
    max_steps: int
    val_check_interval: int
    save_interval: int
    val_batches: int

    @classmethod
    def plan(cls, loop: SFTLoopConfig, train_batches_per_epoch: int, val_batches_per_epoch: int) -> Budget:
        steps_per_epoch = _limit(train_batches_per_epoch, loop.limit_train_batches, "limit_train_batches")
        if steps_per_epoch < 1:
            raise SftError("the training data gives no full global batch per epoch: lower model.global_batch_size")
        limits = []
        if loop.max_epochs is not None and loop.max_epochs >= 0:
            limits.append(steps_per_epoch * loop.max_epochs)
        if loop.max_steps >= 0:
            limits.append(loop.max_steps)
        if not limits:
            raise SftError("set trainer.sft.max_steps or trainer.sft.max_epochs: the run has no end")
        max_steps = min(limits)
        interval = loop.val_check_interval
        if isinstance(interval, float):
            if not 0.0 < interval <= 1.0:
                raise SftError(f"trainer.sft.val_check_interval as a fraction must be within (0, 1], got {interval}")
            interval = max(1, math.floor(steps_per_epoch * interval))
        if interval < 1:
            raise SftError(f"trainer.sft.val_check_interval must be positive, got {interval}")
        save = loop.save_interval if loop.save_interval is not None else interval
        if save < 1:
            raise SftError(f"trainer.sft.save_interval must be positive, got {save}")
        val_batches = _limit(val_batches_per_epoch, loop.limit_val_batches, "limit_val_batches")
        return cls(steps_per_epoch, max_steps, interval, save, val_batches)
