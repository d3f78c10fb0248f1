"""``sft convert``: Hugging Face ⇄ ``.nemo``, tensor by tensor, with a progress bar."""

from __future__ import annotations

from pathlib import Path

import click

from sft_cli.progress import progress_bar


@click.group("convert")
def convert_group() -> None:
    """Convert models between Hugging Face (safetensors) and .nemo."""


@convert_group.command("hf-to-nemo")
@click.argument("hf_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("output", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
def hf_to_nemo_command(app, hf_dir: Path, output: Path) -> None:
    """Convert HF_DIR (config.json, safetensors, tokenizer files) into OUTPUT.nemo, tokenizer embedded."""
    from sft_model.hf.convert import hf_to_nemo

    with progress_bar("converting tensors") as progress:
        path = hf_to_nemo(hf_dir, output, pm=app.pm, progress=progress)
    click.echo(f"wrote {path}")


@convert_group.command("nemo-to-hf")
@click.argument("nemo", type=click.Path(exists=True, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.pass_obj
def nemo_to_hf_command(app, nemo: Path, out_dir: Path) -> None:
    """Convert NEMO (.nemo file or extracted directory) into an HF directory loadable by transformers."""
    from sft_model.hf.convert import nemo_to_hf

    with progress_bar("converting tensors") as progress:
        path = nemo_to_hf(nemo, out_dir, pm=app.pm, progress=progress)
    click.echo(f"wrote {path}")
