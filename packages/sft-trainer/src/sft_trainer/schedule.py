"""The learning-rate schedule: the reference's CosineAnnealing (warmup, constant, cosine, min_lr)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from sft_core import SftError


@dataclass(frozen=True)
class CosineAnnealing:
    """lr(step) for optimizer step ``step`` (0-based).

    Linear warmup from 0 to ``max_lr`` over ``warmup_steps``; ``max_lr`` for ``constant_steps``;
    cosine decay to ``min_lr`` over the remaining ``max_steps - warmup - constant`` steps; ``min_lr``
    afterwards. A negative decay length (the reference's default 1000 constant steps with a short
    run) is rejected instead of silently producing a wrong schedule.
    """

    max_lr: float
    min_lr: float
    warmup_steps: int
    constant_steps: int
    max_steps: int

    def __post_init__(self) -> None:
        decay = self.max_steps - self.warmup_steps - self.constant_steps
        if decay < 0:
            raise SftError(
                f"the learning-rate schedule does not fit in {self.max_steps} steps: warmup_steps "
                f"({self.warmup_steps}) + constant_steps ({self.constant_steps}) exceed it; lower "
                f"model.optim.sched.constant_steps or warmup_steps"
            )
        if self.min_lr > self.max_lr:
            raise SftError(f"min_lr ({self.min_lr}) is larger than lr ({self.max_lr})")

    @property
    def decay_steps(self) -> int:
        return self.max_steps - self.warmup_steps - self.constant_steps

    def __call__(self, step: int) -> float:
        if self.warmup_steps and step < self.warmup_steps:
            return self.max_lr * (step + 1) / (self.warmup_steps + 1)
        step -= self.warmup_steps
        if step < self.constant_steps:
            return self.max_lr
        step -= self.constant_steps
        if self.decay_steps == 0 or step >= self.decay_steps:
            return self.min_lr
        progress = step / self.decay_steps
        return self.min_lr + 0.5 * (self.max_lr - self.min_lr) * (1 + math.cos(math.pi * progress))
