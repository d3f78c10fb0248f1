"""``create_cli(pm)``: the click app, with one-line errors and a shared context."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from functools import cached_property
from importlib import metadata

import click
import pluggy
from sft_core import PluginError, SftError
from sft_data.registries import DataRegistries


@dataclass
class AppContext:
    """What every command can reach through ``click.get_current_context().obj``."""

    pm: pluggy.PluginManager
    debug: bool = False
    _cache: dict = field(default_factory=dict)

    @cached_property
    def data(self) -> DataRegistries:
        return DataRegistries.from_plugin_manager(self.pm)


class SftGroup(click.Group):
    """Turns user errors into one line on stderr (exit 1); ``--debug`` shows the traceback."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        name = name or cmd.name
        if name in self.commands:
            raise PluginError(f"command {name!r} is added twice (by {cmd.callback.__module__!r})")
        super().add_command(cmd, name)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt):
            raise
        except SftError as exc:
            if _debug(ctx):
                raise
            _fail(str(exc))
        except Exception as exc:
            if _debug(ctx):
                raise
            _fail(f"{type(exc).__name__}: {exc} (run with --debug for the traceback)")


def _debug(ctx: click.Context) -> bool:
    obj = ctx.find_object(AppContext)
    return bool(obj and obj.debug) or os.environ.get("SFT_DEBUG") == "1"


def _fail(message: str) -> None:
    click.echo(click.style("Error: ", fg="red", bold=True) + message, err=True)
    sys.exit(1)


def create_cli(pm: pluggy.PluginManager) -> click.Group:
    """Build the ``sft`` click group; every command comes through ``sft_register_commands``."""

    @click.group(cls=SftGroup, context_settings={"help_option_names": ["-h", "--help"]})
    @click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
    @click.version_option(_version(), prog_name="sft")
    @click.pass_context
    def cli(ctx: click.Context, debug: bool) -> None:
        """sft: supervised fine-tuning of GPT-style models on megatron-core."""
        ctx.obj = AppContext(pm=pm, debug=debug)

    pm.hook.sft_register_commands(cli=cli)
    return cli


def _version() -> str:
    try:
        return metadata.version("sft-cli")
    except metadata.PackageNotFoundError:
        return "unknown"
