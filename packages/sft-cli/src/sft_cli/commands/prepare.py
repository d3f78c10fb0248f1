"""``sft prepare``: validate, tokenize, pack and write a dataset with its statistics."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from sft_data.prepare import STATS_FILE, prepare
from sft_data.store import is_prepared_dataset
from sft_data.tokenizers import load_tokenizer
from sft_data.workers import default_workers

from sft_cli.data_options import build_config, data_options, split_inputs
from sft_cli.outputs import overwrite_option, replacing
from sft_cli.progress import progress_bar


def summary_table(stats: dict) -> Table:
    table = Table("", "value", title="prepared", show_header=False)
    for key in ("samples", "tokens", "trained_tokens", "truncated", "dropped", "skipped_invalid"):
        table.add_row(key.replace("_", " "), f"{stats[key]:,}")
    for name, value in stats["length_percentiles"].items():
        table.add_row(f"length {name}", f"{value:,}")
    packing = stats.get("packing")
    if packing:
        table.add_row("packing", f"{packing['algorithm']} into {packing['bins']:,} bins of {packing['pack_size']:,}")
        table.add_row("packing efficiency", f"{packing['efficiency']:.4f}")
        table.add_row("sequences per bin", f"{packing['sequences_per_bin']['mean']:.2f} "
                      f"(min {packing['sequences_per_bin']['min']}, max {packing['sequences_per_bin']['max']})")
    return table


@click.command("prepare")
@data_options
@click.option("--output", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory to write the prepared dataset and stats.json to.")
@overwrite_option("--output (a prepared dataset)")
@click.option("--pack-size", type=click.IntRange(min=2), help="Pack samples into bins of this many tokens.")
@click.option("--packing-algorithm", default="first_fit_shuffle", show_default=True,
              help="first_fit_shuffle, first_fit_decreasing, best_fit_decreasing, or a plugin's.")
@click.option("--seed", type=int, default=1234, show_default=True, help="Seed for shuffled packing.")
@click.option("--skip-invalid", is_flag=True, help="Skip invalid records (counted in stats.json) instead of failing.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Processes that tokenize, one core each (default: this machine's cores); the output is "
                   "the same for any number.")
@click.pass_obj
def prepare_command(app, tokenizer_path, fmt, prompt_template, label_key, chat_template, max_seq_length,
                    answer_only_loss, overrides_and_inputs, output, pack_size, packing_algorithm, seed,
                    skip_invalid, workers, overwrite) -> None:
    """Validate and tokenize INPUT files (optionally packing them) into --output.

    Inputs: JSON Lines (also .jsonl.gz), a JSON array, Parquet, Arrow, or a datasets.save_to_disk
    directory. Every invalid record is reported as file:row: reason (the row is the line of a JSON
    Lines file, the position of a record in the others). Data settings can be overridden as
    key=value (e.g. add_bos=true, truncation_field=context, chat_prompt_tokens.turn_start='<t>').
    """
    inputs, overrides = split_inputs(overrides_and_inputs)
    config = build_config(overrides, fmt=fmt, prompt_template=prompt_template, label_key=label_key,
                          chat_template=chat_template, max_seq_length=max_seq_length,
                          answer_only_loss=answer_only_loss, pack_size=pack_size,
                          packing_algorithm=packing_algorithm, seed=seed, skip_invalid=skip_invalid or None)
    with replacing(output, overwrite, replaceable=is_prepared_dataset, what="a prepared dataset") as tmp:
        tokenizer = load_tokenizer(tokenizer_path, app.data.tokenizers)
        with progress_bar("tokenizing") as update:
            result = prepare(inputs, tokenizer, config, tmp, app.data, progress=update,
                             workers=workers or default_workers())
    console = Console(stderr=True)
    for path, name in result.stats["formats"].items():
        if config.format == "auto":
            console.print(f"{path}: detected format [bold]{name}[/bold]")
    for problem in result.problems[:10]:
        console.print(f"[yellow]skipped[/yellow] {problem}", highlight=False)
    Console().print(summary_table(result.stats))
    click.echo(f"wrote {output} and {output / STATS_FILE}")
