"""``sft csv-to-jsonl``: a subcommand added through ``sft_register_commands``.

It converts a CSV file to the built-in prompt-response JSON Lines (``{"input", "output"}``),
reading it with the same ``CsvFormat`` so its problems are reported the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from sft_data.config import DataConfig
from sft_data.errors import RecordError, RecordProblem

from sft_example_format.csv_format import CsvFormat


@click.command("csv-to-jsonl")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("target", type=click.Path(dir_okay=False, path_type=Path))
def csv_to_jsonl(source: Path, target: Path) -> None:
    """Convert SOURCE.csv (prompt,response columns) to prompt-response TARGET.jsonl."""
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
    target.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    click.echo(f"wrote {len(lines)} records to {target}")

