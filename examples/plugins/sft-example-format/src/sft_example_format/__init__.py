"""Example sft plugin: the ``csv`` dataset format and the ``sft csv-to-jsonl`` command.

sft imports this module through the ``sft`` entry point declared in pyproject.toml and registers
it with its plugin manager; pluggy then calls the ``@hookimpl`` functions below by name.
"""

from __future__ import annotations

from sft_core import hookimpl

from sft_example_format.csv_format import CsvFormat

__version__ = "0.1.0"


@hookimpl
def sft_register_dataset_formats(register):
    register(CsvFormat())


# optionalhook: where sft-cli is not installed (sft-data alone) no package declares
# sft_register_commands, and the plugin manager would otherwise reject the whole plugin.
@hookimpl(optionalhook=True)
def sft_register_commands(cli):
    from sft_example_format.command import csv_to_jsonl

    cli.add_command(csv_to_jsonl)
