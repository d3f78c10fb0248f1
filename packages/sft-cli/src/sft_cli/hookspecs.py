"""Hooks that sft-cli calls. Plugins implement them with ``sft_core.hookimpl``.

sft-core finds this module through sft-cli's ``sft_hosts`` entry point: ``DEFAULT_PLUGINS`` are
the built-in commands, added through the same hook a third party implements.
"""

from __future__ import annotations

import click
from sft_core import hookimpl, hookspec

__all__ = ["DEFAULT_PLUGINS", "LAYER", "hookimpl", "hookspec"]

LAYER = 3
DEFAULT_PLUGINS: tuple[str, ...] = ("sft_cli.commands.builtin",)


@hookspec
def sft_register_commands(cli: click.Group) -> None:
    """Add commands to the ``sft`` click group with ``cli.add_command(...)``.

    Called once when the app is built by ``create_cli(pm)``. Every built-in command is added
    through this hook too. Adding a name that already exists is an error naming the plugin.
    """
