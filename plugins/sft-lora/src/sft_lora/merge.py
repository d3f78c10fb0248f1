"""``sft merge-lora BASE.nemo ADAPTER.nemo OUT.nemo``: W += B·A·alpha/adapter_dim, at any TP.

The reference's merge script omitted alpha/dim (right only when alpha == adapter_dim). Under
torchrun each tensor-parallel rank folds its own shard (the split factor is gathered), and the
result is a full ``.nemo`` loadable at any TP/PP like any other.
"""

from __future__ import annotations

from pathlib import Path

import click

from sft_lora.config import parse
from sft_lora.method import LoraMethod, fold, is_adapter_key


class MergeError(click.ClickException):
    """One-line error for the CLI."""


def adapter_settings(adapter_path: str | Path):
    from sft_model import read_config

    config = read_config(adapter_path)
    peft = config.extra.get("peft") or {}
    if peft.get("peft_scheme") != "lora":
        raise MergeError(f"{adapter_path}: not a LoRA adapter .nemo (its model_config.yaml has peft_scheme "
                         f"{peft.get('peft_scheme', 'none')!r})")
    return config, parse(peft.get("lora_tuning"))


def load_with_adapter(base_path: str | Path, adapter_path: str | Path, *, dtype=None):
    """The base model built with the adapter's LoRA layers, base and adapter weights loaded (the
    host's path, which ``sft generate`` and ``sft convert`` take too)."""
    from sft_trainer.adapters import load_with_base

    config, _ = adapter_settings(adapter_path)  # a LoRA adapter with valid settings, or a one-line error
    return load_with_base(base_path, adapter_path, config.extra["peft"], LoraMethod(), dtype=dtype), config


def merge_lora(base_path: str | Path, adapter_path: str | Path, out_path: str | Path) -> Path:
    """Write ``out_path``: the base with the adapter folded in and the adapter's training config
    (prompt template, data section) with ``peft_scheme: none``."""
    from sft_model import save_nemo

    loaded, adapter_config = load_with_adapter(base_path, adapter_path)
    if fold(loaded.model) == 0:
        raise MergeError(f"{adapter_path}: no LoRA layers matched the base model")
    extra = dict(adapter_config.extra)
    extra["peft"] = {"peft_scheme": "none", "merged_lora": dict(extra.get("peft") or {})}
    config = adapter_config.replace(extra=extra)
    return save_nemo(out_path, loaded.handle, config, loaded.tokenizer, select=lambda key: not is_adapter_key(key))


@click.command("merge-lora")
@click.argument("base", type=click.Path(exists=True, dir_okay=True))
@click.argument("adapter", type=click.Path(exists=True, dir_okay=True))
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--overwrite", is_flag=True,
              help="Replace OUT if it exists (the new one is written beside it and swapped in only when complete).")
def merge_lora_command(base: str, adapter: str, out: str, overwrite: bool) -> None:
    """Fold a LoRA ADAPTER .nemo into its BASE .nemo (W += B·A·alpha/adapter_dim); write OUT.

    Run it under torchrun with several processes to merge at tensor parallelism > 1
    (set SFT_MERGE_TP; default: all processes).
    """
    import os

    # merge-lora runs only inside the sft CLI (this module is loaded by its command hook)
    from sft_cli.outputs import check_free, replacing

    check_free(out, overwrite)  # every rank, before any model is loaded
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        from sft_model.parallel import initialize

        initialize(int(os.environ.get("SFT_MERGE_TP", world)))
    if int(os.environ.get("RANK", "0")) != 0:
        # other ranks write only their weight shards, into rank 0's staging directory beside OUT
        merge_lora(base, adapter, out)
        return
    with replacing(out, overwrite) as tmp:
        merge_lora(base, adapter, tmp)
    click.echo(f"wrote {out}")
