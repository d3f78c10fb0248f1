"""``sft preview``: the rendered samples with trained tokens highlighted."""

from __future__ import annotations

import click
from rich.console import Console
from rich.text import Text
from sft_data.errors import RecordProblem
from sft_data.preview import KIND_NAMES, KINDS, PreviewItem, kind_summary, preview
from sft_data.tokenizers import load_tokenizer
from sft_data.types import REASONING, TOOL_CALL, TOOL_RESULT

from sft_cli.data_options import build_config, data_options, split_inputs

TRAINED_MARKS = ("⟦", "⟧")
KIND_MARKS = {TOOL_CALL: ("⟪", "⟫"), TOOL_RESULT: ("⦅", "⦆"), REASONING: ("⦃", "⦄")}
"""--plain: each kind between its own brackets, inside the trained brackets when trained."""
KIND_COLOURS = {None: "green", TOOL_CALL: "cyan", TOOL_RESULT: "magenta", REASONING: "yellow"}


def _header(item: PreviewItem) -> str:
    notes = [f"{item.num_tokens} tokens", f"{item.num_trained} trained"]
    if item.truncated:
        notes.append("truncated")
    if item.dropped:
        notes.append(f"DROPPED: {item.dropped}")
    return " · ".join([f"── {item.source} ({item.format})", ", ".join(notes), *kind_summary(item)])


def _legend(plain: bool) -> str:
    if plain:
        marks = [f"{TRAINED_MARKS[0]}trained{TRAINED_MARKS[1]}"]
        marks += [f"{KIND_MARKS[k][0]}{KIND_NAMES[k]}{KIND_MARKS[k][1]}" for k in KINDS]
        return "legend: " + "  ".join(marks)
    return "legend: bold = trained, dim = not trained; " + ", ".join(
        f"{KIND_COLOURS[k]} = {KIND_NAMES[k]}" for k in KINDS)


def _plain(pieces) -> str:
    out = []
    for text, trained, kind in pieces:
        if kind is not None:
            text = f"{KIND_MARKS[kind][0]}{text}{KIND_MARKS[kind][1]}"
        out.append(f"{TRAINED_MARKS[0]}{text}{TRAINED_MARKS[1]}" if trained else text)
    return "".join(out)


def _styled(pieces) -> Text:
    text = Text()
    for piece, trained, kind in pieces:
        colour = KIND_COLOURS[kind]
        text.append(piece, style=f"bold {colour}" if trained else ("dim" if kind is None else f"dim {colour}"))
    return text


@click.command("preview")
@data_options
@click.option("-n", "count", type=click.IntRange(min=1), default=3, show_default=True, help="Samples per file.")
@click.option("--plain", is_flag=True, help="No colour: trained spans as ⟦…⟧, tool calls ⟪…⟫, tool results ⦅…⦆, "
              "reasoning ⦃…⦄.")
@click.pass_obj
def preview_command(app, tokenizer_path, fmt, prompt_template, label_key, chat_template, max_seq_length,
                    answer_only_loss, overrides_and_inputs, count, plain) -> None:
    """Show what the model is trained on: the first N samples of each INPUT file, rendered.

    Trained tokens are bold (or ⟦…⟧ with --plain); everything else is context. Tool calls, tool
    results and reasoning have their own colours (or brackets), and each sample's header says how
    many of their tokens are trained. Data settings can be overridden as key=value (e.g.
    chat_prompt_tokens.end_of_turn='\\n', train_reasoning=false).
    """
    inputs, overrides = split_inputs(overrides_and_inputs)
    config = build_config(overrides, fmt=fmt, prompt_template=prompt_template, label_key=label_key,
                          chat_template=chat_template, max_seq_length=max_seq_length,
                          answer_only_loss=answer_only_loss)
    tokenizer = load_tokenizer(tokenizer_path, app.data.tokenizers)
    console = Console(highlight=False, no_color=plain, soft_wrap=True)
    problems = 0
    legend = False
    for path in inputs:
        for item in preview(path, tokenizer, config, count, app.data):
            if isinstance(item, RecordProblem):
                problems += 1
                click.echo(click.style(f"invalid: {item}", fg="red"), err=True)
                continue
            if item.kinds and not legend:
                legend = True
                click.echo(_legend(plain))
            click.echo(click.style(_header(item), bold=True))
            if plain:
                click.echo(_plain(item.pieces))
            else:
                console.print(_styled(item.pieces))
            click.echo()
    if problems:
        raise SystemExit(1)
