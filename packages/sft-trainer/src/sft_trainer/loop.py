"""The supervised training loop: steps, validation, checkpoints, early stopping, signals, the time
limit (``deadline``), NaN guard."""

from __future__ import annotations

import contextlib
import math
import signal
import time
from collections.abc import Callable
from pathlib import Path

from sft_core import EventDispatcher, SftError

from sft_trainer.budget import Budget
from sft_trainer.checkpoint import CheckpointManager, TrainState
from sft_trainer.data import BatchSource
from sft_trainer.deadline import Deadline
from sft_trainer.distributed import Topology, any_rank, first_failure
from sft_trainer.optim import set_lr
from sft_trainer.schedule import CosineAnnealing
from sft_trainer.step import evaluate, train_step


class NonFiniteLossError(SftError):
    """The loss became NaN or Inf."""


class MetricsWriteError(SftError):
    """metrics.jsonl (a required logger) could not be written: every rank stops."""


class StopSignal:
    """SIGTERM/SIGINT: finish the current step, save, exit cleanly."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous = {}

    def __enter__(self) -> StopSignal:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.requested = signal.Signals(signum).name

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class Loop:
    def __init__(self, *, cfg, topo: Topology, model_chunks, optimizer, train: BatchSource,
                 val: BatchSource | None, budget: Budget, schedule: CosineAnnealing,
                 checkpoints: CheckpointManager | None, events: EventDispatcher,
                 state: TrainState, use_te: bool, inference=None, deadline: Deadline | None = None,
                 export_validated: Callable[[], Path] | None = None):
        self.cfg, self.topo, self.chunks, self.optimizer = cfg, topo, model_chunks, optimizer
        self.train, self.val, self.budget, self.schedule = train, val, budget, schedule
        self.checkpoints, self.events, self.state = checkpoints, events, state
        self.use_te = use_te
        self.inference = inference
        """``generation.validation.InferenceEvaluator`` when inference metrics are configured."""
        self.deadline = deadline
        """``trainer.max_time``: when to save and stop."""
        self.export_validated = export_validated
        """``model.save_nemo_on_validation_end``: writes the .nemo after a checkpoint that follows a validation."""
        self.gbs = cfg.model.global_batch_size
        self._unwritten: str | None = None
        """Why a required logger (metrics.jsonl) failed on rank 0, until every rank has learned it."""

    def validate(self) -> float | None:
        if self.val is None or self.budget.val_batches == 0:
            return None
        loss, _ = evaluate(self.chunks, self.val.epoch_batches(self.budget.val_batches), self.topo, use_te=self.use_te)
        self.state.val_loss = loss
        metrics = {"validation/loss": loss}
        if self.inference is not None:
            metrics.update(self.inference.evaluate())
        self._log(metrics)
        self.events.call("sft_on_validation_end", state=self.state, metrics=metrics)
        return loss

    def _log(self, metrics: dict[str, float]) -> None:
        if not self.topo.is_main or self._unwritten:
            return
        try:
            self.events.call("sft_on_log", step=self.state.step, metrics=metrics)
        except SftError as exc:  # only a required logger raises; the other ranks learn it in _stop_if_unwritten
            self._unwritten = str(exc)

    def _stop_if_unwritten(self) -> None:
        failure = first_failure(self._unwritten)
        if failure:
            raise MetricsWriteError(f"metrics of step {self.state.step} not written: {failure}")

    def _improved(self, loss: float) -> bool:
        best = self.state.best_val_loss
        stop = self.cfg.trainer.sft.early_stopping
        sign = -1 if self.cfg.exp_manager.checkpoint_callback_params.mode == "min" else 1
        better = best is None or sign * (loss - best) > stop.min_delta
        if better:
            self.state.best_val_loss = loss
            self.state.validations_without_improvement = 0
        else:
            self.state.validations_without_improvement += 1
        return better

    def save(self) -> None:
        if self.checkpoints is None:
            return
        began = Deadline.clock()
        sampler = self.train.sampler.state_for(self.state.consumed_samples)
        path = self.checkpoints.save(self.state, self.chunks, self.optimizer, {"step": self.state.step}, sampler)
        if self.export_validated is not None and self.state.val_loss is not None:
            nemo = self.export_validated()
            if self.topo.is_main:
                print(f"step {self.state.step}: validated model (loss {self.state.val_loss:.4f}) exported to {nemo}")
        self.events.call("sft_on_save", state=self.state, path=str(path))
        if self.deadline is not None:
            self.deadline.saved(Deadline.clock() - began)

    def _out_of_time(self, began: float, *, saving_now: bool) -> bool:
        """After a step that began at ``began``: would the next step and a save after it overrun
        ``trainer.max_time``? The same answer on every rank."""
        if self.deadline is None:
            return False
        self.deadline.stepped(Deadline.clock() - began)
        return any_rank(self.deadline.next_step_overruns(saving_now=saving_now))

    def step_once(self) -> dict[str, float]:
        start = time.perf_counter()
        microbatches = self.train.batch_at(self.state.consumed_samples)
        result, _ = train_step(self.chunks, self.optimizer, microbatches, self.topo, use_te=self.use_te)
        lr = self.schedule(self.state.step)
        if not math.isfinite(result.loss):
            if not self.cfg.trainer.sft.skip_nonfinite_steps:
                raise NonFiniteLossError(
                    f"the loss is {result.loss} at step {self.state.step + 1}; stopping (the last good checkpoint "
                    f"is kept; set trainer.sft.skip_nonfinite_steps=true to skip such steps instead)")
            grad_norm = float("nan")
        else:
            set_lr(self.optimizer, lr)
            _, grad_norm, _ = self.optimizer.step()
        self.state.step += 1
        self.state.consumed_samples += self.gbs
        self.state.epoch = self.state.consumed_samples // self.train.sampler.samples_per_epoch
        elapsed = time.perf_counter() - start
        metrics = {
            "train/loss": result.loss, "train/lr": lr,
            "train/grad_norm": float(grad_norm) if grad_norm is not None else float("nan"),
            "train/tokens_per_sec": result.tokens / elapsed, "train/trained_tokens": result.trained_tokens,
            "train/consumed_samples": self.state.consumed_samples, "train/step_time": elapsed,
            "epoch": self.state.epoch,
        }
        if result.moe_aux_loss is not None:
            metrics["train/moe_aux_loss"] = result.moe_aux_loss
        return metrics

    def run(self) -> TrainState:
        self.events.call("sft_on_train_start", state=self.state, model=self.chunks)
        try:
            self._steps()
        except BaseException:
            self.state.extra["stopped"] = "error"
            with contextlib.suppress(Exception):  # the error on its way out must not be replaced
                self.events.call("sft_on_train_end", state=self.state)
            raise
        self.events.call("sft_on_train_end", state=self.state)
        return self.state

    def _steps(self) -> None:
        sft = self.cfg.trainer.sft
        if self.budget.max_steps == 0 == self.state.step:  # nothing to train: evaluate the starting model
            self.validate()
            self._stop_if_unwritten()
            return
        with StopSignal() as stop:
            if self.deadline is not None and any_rank(self.deadline.expired()):
                self.state.extra["stopped"] = "max_time"  # spent before the first step: nothing new to save
                return
            while self.state.step < self.budget.max_steps:
                began = Deadline.clock()
                metrics = self.step_once()
                if self.state.step % sft.log_every_n_steps == 0 or self.state.step == self.budget.max_steps:
                    self._log(metrics)
                self.events.call("sft_on_step_end", state=self.state, metrics=metrics)
                last = self.state.step == self.budget.max_steps
                validated = self.state.step % self.budget.val_check_interval == 0 or last
                early_stop = False
                if validated:
                    loss = self.validate()
                    if loss is not None and not self._improved(loss) and sft.early_stopping.enabled:
                        early_stop = self.state.validations_without_improvement >= sft.early_stopping.patience
                else:
                    self.state.val_loss = None
                self._stop_if_unwritten()
                # a launcher signals every rank, but they need not notice at the same step: all stop together
                anywhere = any_rank(bool(stop.requested))  # a collective: every rank calls it
                signalled = stop.requested or ("SIGTERM" if anywhere else None)
                scheduled = self.state.step % self.budget.save_interval == 0 or last or early_stop or bool(signalled)
                out_of_time = not last and self._out_of_time(began, saving_now=scheduled)
                if scheduled or out_of_time:
                    self.save()
                if early_stop:
                    self.state.extra["stopped"] = "early_stopping"
                    return
                if signalled:
                    self.state.extra["stopped"] = signalled
                    return
                if out_of_time:
                    self.state.extra["stopped"] = "max_time"
                    return
