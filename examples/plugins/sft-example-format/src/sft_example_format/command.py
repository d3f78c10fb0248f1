"""``sft csv-to-jsonl``: a subcommand added through ``sft_register_commands``.

It converts a CSV file to the built-in prompt-response JSON Lines (``{"input", "output"}``),
reading it with the same ``CsvFormat`` so its problems are reported the same way. Like every sft
command it replaces an existing TARGET only with ``--overwrite``, and never leaves it half-written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
from sft_data.config import DataConfig
from sft_data.errors import RecordError, RecordProblem

from sft_example_format.csv_format import CsvFormat


@click.command("csv-to-jsonl")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("target", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--overwrite", is_flag=True, help="Replace TARGET if it exists.")
def csv_to_jsonl(source: Path, target: Path, overwrite: bool) -> None:
    """Convert SOURCE.csv (prompt,response columns) to prompt-response TARGET.jsonl."""
    if target.exists() and not overwrite:
        raise click.ClickException(f"{target} already exists; pass --overwrite to replace it")
    fmt, config = CsvFormat(), DataConfig()
    problems: list[str] = []
    lines: list[str] = []
    for item in fmt.read(source):
        if isinstance(item, RecordProblem):
            problems.append(str(item))
            continue
        try:
            fmt.parse(item.data, config)  # the checks `sft prepare --format csv` makes
        except RecordError as exc:
            problems.append(f"{item.location}: {exc}")
            continue
        lines.append(json.dumps({"input": item.data["prompt"], "output": item.data["response"]},
                                ensure_ascii=False))
    if problems:
        # nothing is written when a row is bad, like `sft prepare` without --skip-invalid
        raise click.ClickException(f"{len(problems)} invalid row(s):\n" + "\n".join(problems[:10]))
    # written beside TARGET and renamed over it in one step: a failed write leaves the old file as it was
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        partial.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    click.echo(f"wrote {len(lines)} records to {target}")

