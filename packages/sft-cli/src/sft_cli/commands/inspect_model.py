"""``sft inspect``: what a ``.nemo`` holds — architecture, parameters, tokenizer, prompt template — or
what a training checkpoint directory holds — step, layout, model and optimizer state."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("inspect")
@click.argument("model", type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def inspect_command(model: Path, as_json: bool) -> None:
    """Describe MODEL (.nemo file or extracted directory, or a training checkpoint directory
    ``…/checkpoints/megatron_gpt_sft--step=…``) without loading its weights."""
    from sft_trainer.checkpoint_inspect import describe_checkpoint, describe_lines, is_checkpoint_dir

    if is_checkpoint_dir(model):
        info = describe_checkpoint(model)
        click.echo(json.dumps(info, indent=2) if as_json else "\n".join(describe_lines(info)))
        return
    from sft_model.nemo.inspect import describe

    info = describe(model)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    arch = info["architecture"]
    click.echo(f"{info['path']}")
    click.echo(f"  family        {info['family'] or 'unknown'}  ({info['parameters']:,} parameters, precision {info['precision']})")
    click.echo(f"  layers        {arch['num_layers']} × hidden {arch['hidden_size']}, ffn {arch['ffn_hidden_size']}, "
               f"heads {arch['num_attention_heads']} (kv groups {arch['num_query_groups']}, head dim {arch['kv_channels']})")
    click.echo(f"  positions     {arch['position_embedding_type']} (base {arch['rotary_base']:g}), "
               f"seq length {arch['encoder_seq_length']}, max {arch['max_position_embeddings']}")
    click.echo(f"  blocks        {arch['normalization']}, {arch['activation']}, bias={arch['bias']}, "
               f"qkv_bias={arch['qkv_bias']}, tied embeddings={arch['share_embeddings_and_output_weights']}")
    click.echo(f"  vocabulary    {info['vocab_size']} (padded to {info['padded_vocab_size']})")
    tok = info["tokenizer"]
    files = ", ".join(tok["files"]) if tok["embedded"] else "not embedded"
    click.echo(f"  tokenizer     {tok['library']}: {files}")
    template = info["prompt_template"]
    shown = "none" if template["template"] is None else json.dumps(template["template"], ensure_ascii=False)
    click.echo(f"  template      {'chat ' if template['chat'] else ''}{shown}")
