"""``sft import-packed``: convert NeMo's packed ``.npy`` into a prepared dataset."""

from __future__ import annotations

import click
from sft_data.packing.nemo_npy import import_nemo_packed
from sft_data.store import is_prepared_dataset

from sft_cli.outputs import overwrite_option, replacing


@click.command("import-packed")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False), help="Dataset directory to write.")
@click.option(
    "--allow-pickle",
    is_flag=True,
    help="Unpickle the file. NeMo's packed files are pickles, and unpickling can execute code: "
    "only for a file you trust.",
)
@click.option("--pack-size", type=click.IntRange(min=1), help="Pack size (default: from the file name).")
@overwrite_option("--output (a prepared dataset)")
def import_packed_command(file: str, output: str, allow_pickle: bool, pack_size: int | None,
                         overwrite: bool) -> None:
    """Import FILE, a packed .npy from NeMo's prepare_packed_ft_dataset.py, into --output.

    The result is the same memory-mapped, pickle-free format that `sft prepare` writes.
    """
    with replacing(output, overwrite, replaceable=is_prepared_dataset, what="a prepared dataset") as tmp:
        summary = import_nemo_packed(file, tmp, allow_pickle=allow_pickle, pack_size=pack_size)
    click.echo(
        f"imported {summary['sequences']} sequences in {summary['bins']} bins "
        f"(pack size {summary['pack_size']}, efficiency {summary['efficiency']:.3f}) into {output}"
    )
