"""``describe``: what is inside a ``.nemo`` without building the model or extracting the weights."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from sft_model.errors import NemoArchiveError
from sft_model.nemo import refs, unpack
from sft_model.nemo.checkpoint import shapes as weight_shapes


def describe(path: str | Path) -> dict[str, Any]:
    """Config summary, parameter count, tokenizer and prompt template of a ``.nemo`` (file or directory)."""
    path = Path(path)
    if not path.exists():
        raise NemoArchiveError(f"{path}: no such file or directory")
    cfg = unpack.read_config(path)
    meta = unpack.read_metadata(path)
    shapes = weight_shapes(meta) if meta is not None else {}
    params = sum(math.prod(s) for k, s in shapes.items() if not k.endswith("_extra_state"))
    data = cfg.data or {}
    chat = bool(data.get("chat")) or data.get("chat_template") is not None
    if chat:  # the chat template it was trained with (a name or Jinja source) and NeMo's prompt tokens
        template = {k: data[k] for k in ("chat_template", "chat_prompt_tokens") if data.get(k)} or None
    else:
        template = (data.get("train_ds") or {}).get("prompt_template")
    tok = cfg.tokenizer
    return {
        "path": str(path),
        "family": cfg.family,
        "architecture": {
            "num_layers": cfg.num_layers, "hidden_size": cfg.hidden_size, "ffn_hidden_size": cfg.ffn_hidden_size,
            "num_attention_heads": cfg.num_attention_heads, "num_query_groups": cfg.num_query_groups,
            "kv_channels": cfg.kv_channels, "position_embedding_type": cfg.position_embedding_type,
            "normalization": cfg.normalization, "activation": cfg.activation, "bias": cfg.bias,
            "qkv_bias": cfg.qkv_bias, "share_embeddings_and_output_weights": cfg.share_embeddings_and_output_weights,
            "encoder_seq_length": cfg.encoder_seq_length, "max_position_embeddings": cfg.max_position_embeddings,
            "rotary_base": cfg.rotary_base,
        },
        "vocab_size": cfg.vocab_size,
        "padded_vocab_size": (shapes.get("embedding.word_embeddings.weight") or (None,))[0],
        "precision": cfg.precision,
        "parameters": params,
        "tokenizer": {"library": tok.library, "files": [a.original for a, _ in refs.tokenizer_artifacts(tok, path)],
                      "embedded": bool(tok.file_refs())},
        "prompt_template": {"chat": chat, "template": template},
    }
