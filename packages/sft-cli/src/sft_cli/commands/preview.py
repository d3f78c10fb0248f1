"""``sft preview``: the rendered samples with trained tokens highlighted."""

from __future__ import annotations

import click
from rich.console import Console
from rich.text import Text
from sft_data.errors import RecordProblem
from sft_data.preview import PreviewItem, preview
from sft_data.tokenizers import load_tokenizer

from sft_cli.data_options import build_config, data_options, split_inputs


def _header(item: PreviewItem) -> str:
    notes = [f"{item.num_tokens} tokens", f"{item.num_trained} trained"]
    if item.truncated:
        notes.append("truncated")
    if item.dropped:
        notes.append(f"DROPPED: {item.dropped}")
    return f"── {item.source} ({item.format}) · {', '.join(notes)}"


@click.command("preview")
@data_options
@click.option("-n", "count", type=click.IntRange(min=1), default=3, show_default=True, help="Samples per file.")
@click.option("--plain", is_flag=True, help="No colour: mark trained spans as ⟦…⟧.")
@click.pass_obj
def preview_command(app, tokenizer_path, fmt, prompt_template, label_key, chat_template, max_seq_length,
                    answer_only_loss, overrides_and_inputs, count, plain) -> None:
    """Show what the model is trained on: the first N samples of each INPUT.jsonl, rendered.

    Trained tokens are green (or ⟦…⟧ with --plain); everything else is context. Data settings
    can be overridden as key=value (e.g. chat_prompt_tokens.end_of_turn='\\n').
    """
    inputs, overrides = split_inputs(overrides_and_inputs)
    config = build_config(overrides, fmt=fmt, prompt_template=prompt_template, label_key=label_key,
                          chat_template=chat_template, max_seq_length=max_seq_length,
                          answer_only_loss=answer_only_loss)
    tokenizer = load_tokenizer(tokenizer_path, app.data.tokenizers)
    console = Console(highlight=False, no_color=plain, soft_wrap=True)
    problems = 0
    for path in inputs:
        for item in preview(path, tokenizer, config, count, app.data):
            if isinstance(item, RecordProblem):
                problems += 1
                click.echo(click.style(f"invalid: {item}", fg="red"), err=True)
                continue
            click.echo(click.style(_header(item), bold=True))
            if plain:
                click.echo("".join(f"⟦{text}⟧" if trained else text for text, trained in item.pieces))
            else:
                text = Text()
                for piece, trained in item.pieces:
                    text.append(piece, style="bold green" if trained else "dim")
                console.print(text)
            click.echo()
    if problems:
        raise SystemExit(1)
