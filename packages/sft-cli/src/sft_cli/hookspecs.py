"""Hooks that sft-cli calls. Plugins implement them with ``HookimplMarker("sft")``."""

from __future__ import annotations

import click
import pluggy

hookspec = pluggy.HookspecMarker("sft")
hookimpl = pluggy.HookimplMarker("sft")


@hookspec
def sft_register_commands(cli: click.Group) -> None:
    """Add commands to the ``sft`` click group with ``cli.add_command(...)``.

    Called once when the app is built by ``create_cli(pm)``. Every built-in command is added
    through this hook too. Adding a name that already exists is an error naming the plugin.
    """
