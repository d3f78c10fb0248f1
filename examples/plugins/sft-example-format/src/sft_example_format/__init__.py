"""Example sft plugin: the ``csv`` dataset format and the ``sft csv-to-jsonl`` command.

sft imports this module through the ``sft`` entry point declared in pyproject.toml and registers
it with its plugin manager; pluggy then calls the ``@hookimpl`` functions below by name.
"""

from __future__ import annotations

import pluggy

from sft_example_format.csv_format import CsvFormat

__version__ = "0.1.0"

# Markers match by project name ("sft"), so the plugin needs no import from sft to declare hooks.
hookimpl = pluggy.HookimplMarker("sft")


@hookimpl
def sft_register_dataset_formats(register):
    register(CsvFormat())


# optionalhook: a plugin manager built without the CLI (sft-data alone, or the trainer's) has no
# sft_register_commands spec and would otherwise reject the whole plugin.
@hookimpl(optionalhook=True)
def sft_register_commands(cli):
    from sft_example_format.command import csv_to_jsonl

    cli.add_command(csv_to_jsonl)
