"""CosineAnnealing equals NeMo's, step for step: both of its shapes (constant_steps 0 and > 0), runs
shorter than warmup + constant, warmup 0, steps past max_steps; and a real training run logs it."""

from __future__ import annotations

import json
import math

import pytest
from sft_trainer.schedule import CosineAnnealing

LR, MIN_LR = 3e-5, 9e-7


def nemo_lr(step: int, warmup: int, constant: int, max_steps: int, lr: float = LR, min_lr: float = MIN_LR) -> float:
    """NeMo ``CosineAnnealing.get_lr()`` at ``last_epoch = step`` (nemo/core/optim/lr_scheduler.py,
    WarmupAnnealHoldPolicy.get_lr with CosineAnnealing's overrides), written out independently."""
    decay = max_steps - (constant + warmup)

    def megatron(s: int) -> float:  # _linear_warmup_with_cosine_annealing
        if warmup > 0 and s <= warmup:
            return lr * s / warmup
        if s > warmup + decay:
            return min_lr
        ratio = (s - warmup) / decay
        return min_lr + 0.5 * (math.cos(math.pi * ratio) + 1.0) * (lr - min_lr)

    if warmup > 0 and step <= warmup:
        return lr * (step + 1) / (warmup + 1) if constant == 0 else megatron(step)
    if constant > 0 and warmup + decay < step <= max_steps:
        return megatron(step)
    if step > max_steps:
        return min_lr
    if constant == 0:
        mult = 0.5 * (1 + math.cos(math.pi * (step - warmup) / (max_steps - warmup)))
        return (lr - min_lr) * mult + min_lr
    return megatron(step)


CASES = [  # (warmup, constant, max_steps)
    (4, 0, 16), (10, 0, 30), (1, 0, 2), (0, 0, 8),  # constant 0: warmup (s+1)/(w+1), cosine over max - warmup
    (4, 2, 16), (10, 1000, 1500), (3, 3, 6), (0, 3, 10),  # constant > 0: warmup s/w, cosine, min_lr tail
    (10, 1000, 10), (10, 1000, 20), (10, 5, 13), (2, 1000, 3),  # max_steps < warmup + constant
    (10, 5, 7), (10, 0, 5), (0, 1000, 10),  # max_steps < warmup; warmup 0 with no room for decay
]


@pytest.mark.parametrize(("warmup", "constant", "max_steps"), CASES)
def test_every_step_of_a_run_is_nemo_s(warmup, constant, max_steps):
    schedule = CosineAnnealing(LR, MIN_LR, warmup, constant, max_steps)
    for step in range(max_steps):
        assert schedule(step) == pytest.approx(nemo_lr(step, warmup, constant, max_steps), rel=1e-12, abs=0), step
    # Past the run: min_lr (NeMo agrees wherever the step is past warmup; a run never takes these steps).
    assert [schedule(s) for s in range(max_steps, max_steps + 5)] == [MIN_LR] * 5


def test_the_shapes_in_numbers():
    # constant > 0: the first step runs at 0, the peak comes at step `warmup`, the tail holds min_lr
    s = CosineAnnealing(max_lr=1.0, min_lr=0.1, warmup_steps=4, constant_steps=2, max_steps=16)
    assert [s(i) for i in range(5)] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert s(4 + 5) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 0.5)))  # halfway through decay 10
    assert [s(i) for i in (14, 15)] == [0.1, 0.1]  # the last constant_steps at min_lr, not at lr
    values = [s(i) for i in range(4, 15)]
    assert values == sorted(values, reverse=True)
    # constant 0: warmup (s+1)/(w+1), so the first step already moves
    s0 = CosineAnnealing(max_lr=1.0, min_lr=0.1, warmup_steps=4, constant_steps=0, max_steps=16)
    assert [s0(i) for i in range(5)] == [0.2, 0.4, 0.6, 0.8, 1.0]
    # the reference's defaults in a short run: warmup, then min_lr; no error
    short = CosineAnnealing(max_lr=1.0, min_lr=0.1, warmup_steps=10, constant_steps=1000, max_steps=15)
    assert [short(i) for i in range(15)] == [i / 10 for i in range(11)] + [0.1] * 4
    # warmup 0 and decay 0: NeMo divides 0 by 0 at step 0; we start at the peak
    assert [CosineAnnealing(1.0, 0.1, 0, 3, 3)(i) for i in range(3)] == [1.0, 0.1, 0.1]


@pytest.mark.parametrize(("warmup", "constant", "max_steps", "expected"), [
    (10, 1000, 10, "warmup_steps 10 + constant_steps 1000 exceed max_steps 10: the whole run is linear warmup, "
     "lr 0 at the first step to 2.7e-05 at the last (the peak 3e-05 is not reached) (as NeMo's CosineAnnealing; "
     "lower model.optim.sched.warmup_steps for a cosine decay)"),
    (10, 1000, 20, "warmup_steps 10 + constant_steps 1000 exceed max_steps 20: linear warmup to 3e-05 over the "
     "first 11 steps, then min_lr 9e-07 for the remaining 9, no cosine decay (as NeMo's CosineAnnealing; "
     "lower model.optim.sched.constant_steps for a cosine decay)"),
    (0, 1000, 10, "warmup_steps 0 + constant_steps 1000 exceed max_steps 10: every step runs at min_lr 9e-07 "
     "(as NeMo's CosineAnnealing; lower model.optim.sched.constant_steps for a cosine decay)"),
    (10, 0, 5, "warmup_steps 10 + constant_steps 0 exceed max_steps 5: the whole run is linear warmup, lr 2.73e-06 "
     "at the first step to 1.36e-05 at the last (the peak 3e-05 is not reached) (as NeMo's CosineAnnealing; "
     "lower model.optim.sched.warmup_steps for a cosine decay)"),
])
def test_a_run_shorter_than_warmup_plus_constant_is_described_in_one_line(warmup, constant, max_steps, expected):
    assert CosineAnnealing(LR, MIN_LR, warmup, constant, max_steps).note() == expected


def test_a_fitting_schedule_says_nothing():
    assert CosineAnnealing(LR, MIN_LR, 10, 1000, 1010).note() is None
    assert CosineAnnealing(LR, MIN_LR, 10, 0, 10).note() is None


def test_min_lr_above_lr_names_both_keys():
    from sft_core import SftError

    with pytest.raises(SftError, match=r"model\.optim\.sched\.min_lr \(0\.1\) is larger than model\.optim\.lr"):
        CosineAnnealing(max_lr=0.01, min_lr=0.1, warmup_steps=0, constant_steps=0, max_steps=5)


def _logged_lrs(run_dir) -> dict[int, float]:
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["train/lr"] for r in lines if "train/lr" in r}


def test_a_training_run_logs_nemo_s_learning_rates(tiny_nemo, train_config, tmp_path, capsys):
    from sft_trainer.run import train

    lr, min_lr = 2e-3, 1e-4
    cfg = train_config(tiny_nemo, tmp_path / "run", "model.global_batch_size=4", "trainer.sft.max_steps=6",
                       "trainer.sft.val_check_interval=6", "model.optim.sched.warmup_steps=2",
                       "model.optim.sched.constant_steps=1", f"model.optim.sched.min_lr={min_lr}",
                       "exp_manager.create_checkpoint_callback=false",
                       "exp_manager.checkpoint_callback_params.save_nemo_on_train_end=false")
    train(cfg)
    logged = _logged_lrs(tmp_path / "run")
    assert sorted(logged) == [1, 2, 3, 4, 5, 6]  # logged step k is optimizer step k - 1
    for step, value in logged.items():
        assert value == pytest.approx(nemo_lr(step - 1, 2, 1, 6, lr, min_lr), rel=1e-12, abs=0), step
    assert logged[1] == 0.0 and logged[3] == lr and logged[6] == min_lr

    # the reference's defaults (warmup 10, constant 1000) with a 3-step run: trains, says so once
    capsys.readouterr()
    cfg = train_config(tiny_nemo, tmp_path / "short", "model.global_batch_size=4", "trainer.sft.max_steps=3",
                       "model.optim.sched.warmup_steps=10", "model.optim.sched.constant_steps=1000",
                       "exp_manager.create_checkpoint_callback=false",
                       "exp_manager.checkpoint_callback_params.save_nemo_on_train_end=false")
    assert train(cfg).state.step == 3
    out = capsys.readouterr().out
    assert out.count("exceed max_steps") == 1
    assert "warmup_steps 10 + constant_steps 1000 exceed max_steps 3: the whole run is linear warmup" in out
    assert _logged_lrs(tmp_path / "short") == {1: 0.0, 2: pytest.approx(lr / 10), 3: pytest.approx(2 * lr / 10)}
