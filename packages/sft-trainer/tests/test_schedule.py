"""CosineAnnealing as the reference defines it, and the negative-decay guard."""

from __future__ import annotations

import math

import pytest
from sft_core import SftError
from sft_trainer.schedule import CosineAnnealing


def test_warmup_constant_cosine_min():
    s = CosineAnnealing(max_lr=1.0, min_lr=0.1, warmup_steps=4, constant_steps=2, max_steps=16)
    assert [s(i) for i in range(4)] == [0.2, 0.4, 0.6, 0.8]
    assert s(4) == s(5) == 1.0
    assert s(6) == 1.0  # decay starts at its top
    assert s(6 + 5) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 0.5)))
    assert s(16) == s(100) == 0.1
    values = [s(i) for i in range(6, 17)]
    assert values == sorted(values, reverse=True)


def test_negative_decay_is_rejected_with_advice():
    with pytest.raises(SftError, match=r"lower model\.optim\.sched\.constant_steps"):
        CosineAnnealing(max_lr=1e-4, min_lr=1e-6, warmup_steps=10, constant_steps=1000, max_steps=200)
