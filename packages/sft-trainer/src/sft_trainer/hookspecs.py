"""Hooks that sft-trainer calls. Plugins implement them with ``sft_core.hookimpl``.

``sft_register_loggers``, ``sft_register_peft_methods`` and ``sft_register_metrics`` are
registration hooks (called once per run with a ``register`` callback). The ``sft_on_*`` event
hooks are called through pluggy on global rank 0 only, with the run's ``TrainState`` (step, epoch,
consumed_samples, run_dir); one failure policy covers them all, loggers included: an exception
in a plugin is reported once by name, that plugin gets no further events, the run goes on.

sft-core finds this module through sft-trainer's ``sft_hosts`` entry point: ``DEFAULT_PLUGINS``
are sft-trainer's built-ins, registered like any plugin.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sft_core import hookimpl, hookspec

__all__ = ["DEFAULT_PLUGINS", "LAYER", "hookimpl", "hookspec"]

LAYER = 2
DEFAULT_PLUGINS: tuple[str, ...] = ("sft_trainer.loggers.builtin", "sft_trainer.nemo_tokenizer",
                                    "sft_trainer.generation.metrics")


@hookspec
def sft_register_loggers(register: Callable[..., None]) -> None:
    """Register metric loggers: ``register(factory)`` where ``factory.name`` names it and
    ``factory.create(run: RunInfo) -> Logger | None`` (``run.run_dir``, ``run.config``,
    ``run.max_steps``, ``run.start_step``) returns a logger with
    ``log_metrics(step: int, metrics: dict[str, float])``, ``log_config(config: dict)`` and
    ``close()``, or None when the config does not enable it. On global rank 0 each logger becomes
    a plugin named ``logger:<name>`` for the run (``sft_on_train_start`` → ``log_config``,
    ``sft_on_log`` → ``log_metrics``, ``sft_on_train_end`` → ``close``), under the event hooks'
    failure policy."""


@hookspec
def sft_register_peft_methods(register: Callable[..., None]) -> None:
    """Register PEFT methods: ``register(method)`` with ``method.name`` (what
    ``model.peft.peft_scheme`` selects), ``method.apply(model_chunks, peft_config, model_config)``
    (``peft_config``: the ``model.peft`` section as a dict, plugins' sections such as ``lora_tuning`` in it)
    which freezes base weights after loading, returning the trainable parameter count, and
    optionally ``method.layer_spec(spec, layer_number, peft_config, model_config) -> ModuleSpec``
    (called before the model is built, per transformer layer, 1-based global number: adapters come
    in through the layer spec) with ``method.is_adapter_key(key) -> bool`` (the checkpoint keys it
    adds: absent from the base .nemo, the only ones in the exported .nemo) and optionally
    ``method.merge(model) -> int`` (fold the adapters of a built GPTModel into its base weights;
    ``sft convert nemo-to-hf`` of an adapter .nemo needs it). An adapter .nemo (its config's
    ``peft.peft_scheme`` names the method) is run on its base through ``layer_spec`` and
    ``is_adapter_key`` by ``sft generate``. Only trainable parameters go into training checkpoints."""


@hookspec
def sft_register_config_sections(register: Callable[..., None]) -> None:
    """Declare the plugin's own configuration: ``register(ConfigSection(path, schema))``
    (``sft_trainer.config.sections``) where ``schema`` is a dataclass whose fields are the keys under
    the dotted ``path`` — a node of its own (``model.peft.lora_tuning``) or keys beside the host's
    (``exp_manager.create_wandb_logger``). Values are typed, range-checked in the dataclass's
    ``__post_init__`` (raise ``SftError``) and named with their full key in errors; an unknown key
    inside the plugin's node names the plugin. The typed value is ``TrainConfig.section(schema)``
    (its defaults when the config does not mention it), and the section is written back into the
    run's config.yaml, checkpoints and ``.nemo`` at its path. A key declared by two plugins, or by a
    plugin and sft-trainer, is an error naming both."""


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
    """An optimizer step finished (every step); ``metrics`` are the step's training metrics."""


@hookspec
def sft_on_log(step: int, metrics: dict[str, float]) -> None:
    """Metrics are due to be written: a step's training metrics every ``trainer.sft.log_every_n_steps``
    steps (and the last step), and each validation's. This is what loggers implement."""


@hookspec
def sft_on_validation_end(state: Any, metrics: dict[str, float]) -> None:
    """A validation pass finished; ``metrics`` holds ``validation/loss``."""


@hookspec
def sft_on_save(state: Any, path: str) -> None:
    """A checkpoint was completely written to ``path``."""


@hookspec
def sft_on_train_end(state: Any) -> None:
    """Training finished, however it ended: ``state.extra.get("stopped")`` is None when it ran to
    its end, else ``"SIGTERM"``/``"SIGINT"``, ``"early_stopping"`` or ``"error"`` (an exception is
    on its way to the caller)."""
