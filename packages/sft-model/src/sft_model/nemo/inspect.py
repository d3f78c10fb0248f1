"""``describe``: what is inside a ``.nemo`` without building the model or extracting the weights."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

from sft_model.errors import NemoArchiveError
from sft_model.nemo import archive
from sft_model.nemo.checkpoint import PREFIX, _MetadataUnpickler
from sft_model.nemo.tokenizer import original_name, read_config


def _weight_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    if path.is_dir():
        meta_file = path / "model_weights" / ".metadata"
        data = meta_file.read_bytes() if meta_file.is_file() else None
    else:
        data = archive.read_member(path, "model_weights/.metadata")
    if data is None:
        return {}
    try:
        meta = _MetadataUnpickler(io.BytesIO(data)).load()
    except Exception as exc:
        raise NemoArchiveError(f"{path}: unsafe or corrupt checkpoint metadata ({exc})") from None
    return {k.removeprefix(PREFIX): tuple(v.size) for k, v in meta.state_dict_metadata.items() if hasattr(v, "size")}


def describe(path: str | Path) -> dict[str, Any]:
    """Config summary, parameter count, tokenizer and prompt template of a ``.nemo`` (file or directory)."""
    path = Path(path)
    if not path.exists():
        raise NemoArchiveError(f"{path}: no such file or directory")
    cfg = read_config(path)
    shapes = _weight_shapes(path)
    params = sum(math.prod(s) for k, s in shapes.items() if not k.endswith("_extra_state"))
    data = cfg.data or {}
    chat = data.get("chat")
    template = data.get("chat_prompt_tokens") if chat else (data.get("train_ds") or {}).get("prompt_template")
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
        "tokenizer": {"library": tok.library, "files": [original_name(r) for r in tok.file_refs()],
                      "embedded": bool(tok.file_refs())},
        "prompt_template": {"chat": bool(chat), "template": template},
    }
