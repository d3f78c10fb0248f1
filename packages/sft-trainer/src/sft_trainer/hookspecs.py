"""Hooks that sft-trainer calls. Plugins implement them with ``HookimplMarker("sft")``.

``sft_register_loggers``, ``sft_register_peft_methods`` and ``sft_register_metrics`` are
registration hooks (called once per run with a ``register`` callback). The ``sft_on_*`` event
hooks are called on global rank 0 with the run's ``TrainState`` (step, epoch, consumed_samples,
run_dir, config); an exception in one is reported and that plugin's events are disabled for the
rest of the run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("sft")
hookimpl = pluggy.HookimplMarker("sft")


@hookspec
def sft_register_loggers(register: Callable[..., None]) -> None:
    """Register metric loggers: ``register(factory)`` where ``factory.name`` names it and
    ``factory.create(run: RunInfo) -> Logger | None`` (``run.run_dir``, ``run.config``,
    ``run.max_steps``, ``run.start_step``) returns a logger with
    ``log_metrics(step: int, metrics: dict[str, float])``, ``log_config(config: dict)`` and
    ``close()``, or None when the config does not enable it."""


@hookspec
def sft_register_peft_methods(register: Callable[..., None]) -> None:
    """Register PEFT methods: ``register(method)`` with ``method.name`` (what
    ``model.peft.peft_scheme`` selects), ``method.apply(model_chunks, peft_config, model_config)``
    which freezes base weights after loading, returning the trainable parameter count, and
    optionally ``method.layer_spec(spec, layer_number, peft_config, model_config) -> ModuleSpec``
    (called before the model is built, per transformer layer, 1-based global number: adapters come
    in through the layer spec) with ``method.is_adapter_key(key) -> bool`` (the checkpoint keys it
    adds: absent from the base .nemo, the only ones in the exported .nemo). Only trainable
    parameters go into training checkpoints."""


@hookspec
def sft_register_metrics(register: Callable[..., None]) -> None:
    """Register generation metrics: ``register(metric)`` with ``metric.name`` (what
    ``trainer.sft.inference_metrics.metrics`` lists; logged as ``validation/<name>``) and
    ``metric.score(prediction: str, reference: str) -> float``; the logged value is the mean score
    over the validation samples answered. Built in: ``exact_match`` and ``token_f1``."""


@hookspec
def sft_on_train_start(state: Any, model: list[Any]) -> None:
    """Training is about to start (after any resume). ``model`` is this rank's list of model chunks
    (megatron-core DDP-wrapped GPTModels), for plugins that inspect or modify weights."""


@hookspec
def sft_on_step_end(state: Any, metrics: dict[str, float]) -> None:
    """An optimizer step finished; ``metrics`` are the ones written to metrics.jsonl."""


@hookspec
def sft_on_validation_end(state: Any, metrics: dict[str, float]) -> None:
    """A validation pass finished; ``metrics`` holds ``validation/loss``."""


@hookspec
def sft_on_save(state: Any, path: str) -> None:
    """A checkpoint was completely written to ``path``."""


@hookspec
def sft_on_train_end(state: Any) -> None:
    """Training finished (also after a SIGTERM stop or early stopping)."""
