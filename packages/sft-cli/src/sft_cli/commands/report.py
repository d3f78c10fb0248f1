"""``sft report``: a training run's curves as a PNG and its summary on the terminal."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("report")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the PNG (default: RUN_DIR/report.png).")
def report_command(run_dir: Path, output: Path | None) -> None:
    """Plot RUN_DIR/metrics.jsonl (loss, learning rate, tokens/s) and print a summary."""
    from sft_trainer.report import write_report

    path, summary = write_report(run_dir, output)
    for line in summary.lines():
        click.echo(line)
    click.echo(f"report: {path}")
