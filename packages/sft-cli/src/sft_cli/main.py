"""Console entry point ``sft``."""

from __future__ import annotations

import sys

import click
from sft_core import SftError


def quiet_third_party_noise() -> None:
    """megatron-core and torch.distributed warn about optional accelerators and deprecations at
    every start; users of the CLI cannot act on those, so they are hidden (``--debug`` keeps them)."""
    import logging
    import warnings

    for module in (r"megatron\..*", r"torch\.distributed\..*", r"torch\.utils\.cpp_extension"):
        warnings.filterwarnings("ignore", module=module)
    warnings.filterwarnings("ignore", category=SyntaxWarning)
    logging.getLogger("megatron").setLevel(logging.ERROR)
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> None:
    from sft_core import get_plugin_manager

    from sft_cli.app import create_cli

    args = sys.argv[1:] if argv is None else argv
    if "--debug" not in args:
        quiet_third_party_noise()
    try:
        pm = get_plugin_manager()
        cli = create_cli(pm)
    except SftError as exc:  # a broken plugin must not hide behind a traceback
        click.echo(click.style("Error: ", fg="red", bold=True) + str(exc), err=True)
        sys.exit(1)
    cli.main(args=argv, prog_name="sft")


if __name__ == "__main__":
    main()
