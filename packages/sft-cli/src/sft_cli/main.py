"""Console entry point ``sft``."""

from __future__ import annotations

import sys

import click
from sft_data.errors import SftError


def main(argv: list[str] | None = None) -> None:
    from sft_cli.app import create_cli
    from sft_cli.plugins import get_plugin_manager

    try:
        pm = get_plugin_manager()
        cli = create_cli(pm)
    except SftError as exc:  # a broken plugin must not hide behind a traceback
        click.echo(click.style("Error: ", fg="red", bold=True) + str(exc), err=True)
        sys.exit(1)
    cli.main(args=argv, prog_name="sft")


if __name__ == "__main__":
    main()
