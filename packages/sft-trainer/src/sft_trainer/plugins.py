"""The application's plugin manager: every host's hookspecs, built-ins first, then entry points."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from types import ModuleType

from sft_data import hookspecs as data_hookspecs
from sft_data.plugins import DEFAULT_PLUGINS as DATA_DEFAULTS
from sft_data.plugins import SftPluginManager, build_plugin_manager
from sft_model import hookspecs as model_hookspecs
from sft_model.plugins import DEFAULT_PLUGINS as MODEL_DEFAULTS

from sft_trainer import hookspecs as trainer_hookspecs

TRAINER_DEFAULTS: tuple[str, ...] = ("sft_trainer.loggers.builtin", "sft_trainer.nemo_tokenizer",
                                     "sft_trainer.generation.metrics")

HOOKSPECS: tuple[ModuleType, ...] = (data_hookspecs, model_hookspecs, trainer_hookspecs)
DEFAULT_PLUGINS: tuple[str, ...] = DATA_DEFAULTS + MODEL_DEFAULTS + TRAINER_DEFAULTS


def get_plugin_manager(
    load_entrypoints: bool = True,
    blocked: Iterable[str] = (),
    *,
    extra_hookspecs: Sequence[ModuleType] = (),
    extra_plugins: Sequence[str] = (),
) -> SftPluginManager:
    """Build the manager for data, model and trainer hooks (plus a caller's, e.g. the CLI's)."""
    return build_plugin_manager(
        (*HOOKSPECS, *extra_hookspecs),
        (*DEFAULT_PLUGINS, *extra_plugins),
        load_entrypoints=load_entrypoints,
        blocked=blocked,
        strict=True,
    )
