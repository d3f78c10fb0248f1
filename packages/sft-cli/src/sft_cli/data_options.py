"""Options shared by the commands that read records (prepare, preview)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click
from sft_data.config import DataConfig, parse_override


def data_options(func: Callable) -> Callable:
    """Adds the record/template options and trailing ``key=value`` data-setting overrides."""
    options = [
        click.option("--tokenizer", "tokenizer_path", required=True,
                     help="SentencePiece .model, HF tokenizer.json (or its directory), or a .nemo."),
        click.option("--format", "fmt", default="auto", show_default=True,
                     help="Record format: auto, prompt-response, nemo-chat, messages, sharegpt, alpaca, or a plugin's."),
        click.option("--prompt-template", help="Prompt-response template, e.g. '{input}\\n\\n{output}'."),
        click.option("--label-key", help="Prompt-response field holding the answer (default output)."),
        click.option("--chat-template", help="Chat template: a name (nemo, chatml, llama3), a .jinja file, "
                     "a tokenizer_config.json, or 'tokenizer'."),
        click.option("--max-seq-length", type=click.IntRange(min=2), help="Longest sample in tokens (default 2048)."),
        click.option("--answer-only-loss/--no-answer-only-loss", default=None,
                     help="Train only on answers (default) or on every token."),
        click.argument("overrides_and_inputs", nargs=-1, required=True),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def split_inputs(args: tuple[str, ...]) -> tuple[list[str], dict]:
    """Positional arguments are input files, except ``key=value`` data-setting overrides (an
    argument naming an existing path is an input even if it holds ``=``)."""
    inputs, overrides = [], {}
    for arg in args:
        if "=" in arg and not arg.endswith(".jsonl") and not Path(arg).exists():
            key, value = parse_override(arg)
            overrides[key] = value
        else:
            inputs.append(arg)
    if not inputs:
        raise click.UsageError("give at least one input file")
    return inputs, overrides


def build_config(overrides: dict, **options) -> DataConfig:
    """CLI options and overrides onto the DataConfig defaults (options win over nothing; overrides last)."""
    names = {"fmt": "format"}
    values = {names.get(k, k): v for k, v in options.items() if v is not None}
    return DataConfig().with_overrides({**values, **overrides})
