"""The CLI's plugin manager: the trainer's, plus the CLI's own hooks and built-in commands."""

from __future__ import annotations

from collections.abc import Iterable

from sft_data.plugins import SftPluginManager
from sft_trainer.plugins import get_plugin_manager as trainer_plugin_manager

from sft_cli import hookspecs

CLI_DEFAULT_PLUGINS: tuple[str, ...] = ("sft_cli.commands.builtin",)


def get_plugin_manager(load_entrypoints: bool = True, blocked: Iterable[str] = ()) -> SftPluginManager:
    return trainer_plugin_manager(
        load_entrypoints,
        blocked,
        extra_hookspecs=(hookspecs,),
        extra_plugins=CLI_DEFAULT_PLUGINS,
    )
