"""``sft convert``: Hugging Face ⇄ ``.nemo``, tensor by tensor, with a progress bar."""

from __future__ import annotations

from pathlib import Path

import click

from sft_cli.outputs import overwrite_option, replacing
from sft_cli.progress import progress_bar


@click.group("convert")
def convert_group() -> None:
    """Convert models between Hugging Face (safetensors) and .nemo."""


@convert_group.command("hf-to-nemo")
@click.argument("hf_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("output", type=click.Path(dir_okay=False, path_type=Path))
@overwrite_option("OUTPUT")
@click.pass_obj
def hf_to_nemo_command(app, hf_dir: Path, output: Path, overwrite: bool) -> None:
    """Convert HF_DIR (config.json, safetensors, tokenizer files) into OUTPUT.nemo, tokenizer embedded."""
    with replacing(output, overwrite) as tmp:
        from sft_model.hf.convert import hf_to_nemo

        with progress_bar("converting tensors") as progress:
            hf_to_nemo(hf_dir, tmp, pm=app.pm, progress=progress)
    click.echo(f"wrote {output}")


@convert_group.command("nemo-to-hf")
@click.argument("nemo", type=click.Path(exists=True, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--base", type=click.Path(exists=True, path_type=Path),
              help="With an adapter-only NEMO (a LoRA run's .nemo): its base .nemo (default: the one it records).")
@overwrite_option("OUT_DIR (an HF model directory)")
@click.pass_obj
def nemo_to_hf_command(app, nemo: Path, out_dir: Path, base: Path | None, overwrite: bool) -> None:
    """Convert NEMO (.nemo file or extracted directory) into an HF directory loadable by transformers.

    An adapter-only NEMO is folded into its base (--base, else the base it was trained on): the
    merged model is written, as `sft merge-lora` then `nemo-to-hf` would.
    """
    with replacing(out_dir, overwrite, replaceable=_is_hf_dir, what="an HF model directory (no config.json)") as tmp:
        from sft_model.hf.convert import loaded_to_hf
        from sft_trainer.adapters import load_for_use

        loaded, _ = load_for_use(nemo, app.pm, base=base, merged=True)
        with progress_bar("converting tensors") as progress:
            loaded_to_hf(loaded, tmp, pm=app.pm, progress=progress)
    click.echo(f"wrote {out_dir}")


def _is_hf_dir(path: Path) -> bool:
    return (path / "config.json").is_file()
