"""sft_model: ModelConfig, megatron-core GPTModel builders, .nemo I/O, HF conversion.

Importing this package is light: megatron-core (≈8 s) is imported only when a function needs it,
because the CLI imports ``sft_model`` for every command.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from sft_model.config import ModelConfig, TokenizerConfig
from sft_model.errors import ConversionError, ModelConfigError, ModelError, NemoArchiveError

_LAZY = {
    "load_nemo": "sft_model.nemo.io",
    "save_nemo": "sft_model.nemo.io",
    "load_weights": "sft_model.nemo.io",
    "read_config": "sft_model.nemo.io",
    "weight_shapes": "sft_model.nemo.io",
    "LoadedModel": "sft_model.nemo.io",
    "TokenizerFiles": "sft_model.nemo.tokenizer",
    "extract_tokenizer": "sft_model.nemo.tokenizer",
    "compute_logits": "sft_model.logits",
    "build_model": "sft_model.builder",
    "get_families": "sft_model.families.registry",
    "hf_to_nemo": "sft_model.hf.convert",
    "nemo_to_hf": "sft_model.hf.convert",
    "init_nemo": "sft_model.random_init",
}

__all__ = ["ConversionError", "ModelConfig", "ModelConfigError", "ModelError", "NemoArchiveError",
           "TokenizerConfig", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sft_model' has no attribute {name!r}")
