"""``sft report``: a training run's curves as a PNG and its summary on the terminal."""

from __future__ import annotations

from pathlib import Path

import click

from sft_cli.outputs import overwrite_option, replacing


@click.command("report")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the PNG (default: RUN_DIR/report.png, the run's own, redrawn in place).")
@overwrite_option()
def report_command(run_dir: Path, output: Path | None, overwrite: bool) -> None:
    """Plot RUN_DIR/metrics.jsonl (loss, learning rate, tokens/s) and print a summary."""
    from sft_trainer.report import REPORT_FILE, write_report

    # the default is the run's own report.png (training draws it): redrawing it from the same
    # metrics loses nothing, so only a path the user names is protected
    target = output or run_dir / REPORT_FILE
    with replacing(target, overwrite or output is None) as tmp:
        _, summary = write_report(run_dir, tmp)
    for line in summary.lines():
        click.echo(line)
    click.echo(f"report: {target}")
