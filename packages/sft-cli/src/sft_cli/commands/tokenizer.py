"""``sft tokenizer train``: a small SentencePiece model for demos and tests."""

from __future__ import annotations

from pathlib import Path

import click
from sft_data.tokenizers.sentencepiece import SentencePieceTokenizer
from sft_data.tokenizers.training import DEFAULT_CONTROL_SYMBOLS, train_sentencepiece

from sft_cli.outputs import overwrite_option, replacing


@click.group("tokenizer")
def tokenizer_group() -> None:
    """Tokenizer utilities."""


@tokenizer_group.command("train")
@click.argument("text_files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--vocab-size", type=click.IntRange(min=300), required=True, help="Number of pieces.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help="PATH.model")
@overwrite_option()
@click.option("--model-type", type=click.Choice(["bpe", "unigram"]), default="bpe", show_default=True)
@click.option("--control-symbol", "control_symbols", multiple=True,
              help="Extra control token (repeatable); chat template tokens are always included.")
def train_command(text_files, vocab_size, output, model_type, control_symbols, overwrite) -> None:
    """Train a SentencePiece tokenizer on TEXT_FILES (one sentence or paragraph per line).

    Chat template control strings (<extra_id_0..2>, <|im_start|>, <|eot_id|>, ...) are added as
    control symbols: one token each when a template puts them, plain text when a user types them.
    """
    symbols = list(dict.fromkeys([*DEFAULT_CONTROL_SYMBOLS, *control_symbols]))
    with replacing(output, overwrite) as tmp:
        tok = SentencePieceTokenizer(train_sentencepiece(text_files, tmp, vocab_size, model_type=model_type,
                                                         control_symbols=symbols))
    click.echo(f"wrote {output} ({tok.vocab_size} pieces; bos={tok.bos_id} eos={tok.eos_id} pad={tok.pad_id})")
