"""The learning-rate schedule: the reference's CosineAnnealing (NeMo ``lr_scheduler.py``), step for step.

NeMo's scheduler is created before the first optimizer step and stepped after each one, so the
k-th optimizer step (0-based) runs at its value for ``last_epoch = k``; ``__call__(k)`` is that value.
It has two shapes, chosen by ``constant_steps``:

- ``constant_steps == 0``: warmup ``lr·(k+1)/(warmup+1)`` for ``k <= warmup``, then a cosine from
  ``lr`` to ``min_lr`` over ``max_steps - warmup`` steps.
- ``constant_steps > 0`` (Megatron style): warmup ``lr·k/warmup`` for ``k <= warmup`` (the first
  step at 0), a cosine over ``decay = max_steps - warmup - constant`` steps, then ``min_lr`` for
  the last ``constant_steps``. The constant phase is at the END, at ``min_lr``, not a plateau at
  ``lr``. When ``decay < 0`` (the reference's default 1000 constant steps in a short run) the
  warmup is followed directly by ``min_lr``; ``note()`` says so in one line.

Steps at or past ``max_steps`` (a run never takes them) give ``min_lr``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sft_core import SftError


def _cosine(max_lr: float, min_lr: float, step: int, length: int) -> float:
    return min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos(math.pi * step / length))


@dataclass(frozen=True)
class CosineAnnealing:
    """lr(step) for optimizer step ``step`` (0-based), as NeMo's ``CosineAnnealing``."""

    max_lr: float
    min_lr: float
    warmup_steps: int
    constant_steps: int
    max_steps: int

    def __post_init__(self) -> None:
        if self.min_lr > self.max_lr:
            raise SftError(f"model.optim.sched.min_lr ({self.min_lr}) is larger than model.optim.lr ({self.max_lr})")
        if self.warmup_steps < 0 or self.constant_steps < 0:
            raise SftError("model.optim.sched.warmup_steps and constant_steps must not be negative")

    @property
    def decay_steps(self) -> int:
        """Length of the cosine; negative when warmup + constant exceed ``max_steps``."""
        return self.max_steps - self.warmup_steps - self.constant_steps

    def __call__(self, step: int) -> float:
        if step >= self.max_steps:
            return self.min_lr
        warmup = self.warmup_steps
        if self.constant_steps == 0:
            if warmup > 0 and step <= warmup:
                return self.max_lr * (step + 1) / (warmup + 1)
            return _cosine(self.max_lr, self.min_lr, step - warmup, self.max_steps - warmup)
        if warmup > 0 and step <= warmup:
            return self.max_lr * step / warmup
        if step > warmup + self.decay_steps:  # the constant tail, and everything after warmup when decay < 0
            return self.min_lr
        if self.decay_steps == 0:
            # only warmup == 0, step == 0 gets here; NeMo divides 0 by 0. The peak, as the step
            # right after warmup has in every other case.
            return self.max_lr
        return _cosine(self.max_lr, self.min_lr, step - warmup, self.decay_steps)

    def note(self) -> str | None:
        """One line on what this run's learning rates are when warmup + constant exceed ``max_steps``
        (the run then never reaches the cosine); None when the schedule fits."""
        if self.decay_steps >= 0 or self.max_steps <= 0:
            return None
        head = (f"warmup_steps {self.warmup_steps} + constant_steps {self.constant_steps} exceed max_steps "
                f"{self.max_steps}: ")
        last = self.max_steps - 1
        if self.warmup_steps == 0:
            what = f"every step runs at min_lr {self.min_lr:g}"
        elif last <= self.warmup_steps:
            what = f"the whole run is linear warmup, lr {self(0):.3g} at the first step to {self(last):.3g} at the last"
            what += f" (the peak {self.max_lr:g} is not reached)" if last < self.warmup_steps else ""
        else:
            what = (f"linear warmup to {self.max_lr:g} over the first {self.warmup_steps + 1} steps, then min_lr "
                    f"{self.min_lr:g} for the remaining {last - self.warmup_steps}, no cosine decay")
        knob = "warmup_steps" if last <= self.warmup_steps else "constant_steps"
        return head + what + f" (as NeMo's CosineAnnealing; lower model.optim.sched.{knob} for a cosine decay)"
