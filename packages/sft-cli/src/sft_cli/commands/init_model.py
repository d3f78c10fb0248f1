"""``sft init``: a small randomly initialised model with its tokenizer, for demos and tests."""

from __future__ import annotations

from pathlib import Path

import click
from sft_data.tokenizers import load_tokenizer

from sft_cli.outputs import overwrite_option, replacing

SIZE_OPTIONS = (
    ("--num-layers", "num_layers", "Transformer layers."),
    ("--hidden-size", "hidden_size", "Model width."),
    ("--num-attention-heads", "num_attention_heads", "Query heads."),
    ("--num-query-groups", "num_query_groups", "Key/value heads (GQA; not gpt2)."),
    ("--ffn-hidden-size", "ffn_hidden_size", "MLP width (default: the family's rule)."),
    ("--seq-length", "encoder_seq_length", "Training sequence length (and positions)."),
)


def _size_options(func):
    for flag, dest, help_text in reversed(SIZE_OPTIONS):
        func = click.option(flag, dest, type=click.IntRange(min=1), default=None, help=help_text)(func)
    return func


@click.command("init")
@click.option("--family", required=True,
              help="Model family: llama, gpt2, qwen3, phi3, gemma2, gemma3, mixtral, qwen3_moe (or one a plugin "
                   "registers).")
@click.option("--tokenizer", "tokenizer_path", required=True, type=click.Path(exists=True, path_type=Path),
              help="SentencePiece .model, HF tokenizer.json (or its directory), or a .nemo.")
@click.option("--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="M.nemo to write.")
@overwrite_option()
@_size_options
@click.option("--seed", type=int, default=1234, show_default=True, help="Random seed of the initial weights.")
@click.pass_obj
def init_command(app, family, tokenizer_path, output, seed, overwrite, **sizes) -> None:
    """Write a randomly initialised model of FAMILY with the tokenizer embedded (2 layers, width 64 by default)."""
    from sft_model.families.registry import get_families
    from sft_model.nemo.tokenizer import TokenizerFiles
    from sft_model.random_init import init_nemo

    get_families(app.pm).get(family)  # an unknown family fails before megatron-core is imported
    if sizes.get("encoder_seq_length"):
        sizes["max_position_embeddings"] = sizes["encoder_seq_length"]
    with replacing(output, overwrite) as tmp:
        tok = load_tokenizer(tokenizer_path, app.data.tokenizers)
        files = TokenizerFiles(tok.kind if tok.kind in ("sentencepiece", "huggingface") else "sentencepiece",
                               [Path(p) for p in tok.files()])
        init_nemo(family, files, tok.vocab_size, tmp, seed=seed, pm=app.pm, **sizes)
    click.echo(f"wrote {output} ({family}, vocab {tok.vocab_size}, tokenizer {tok.kind})")
