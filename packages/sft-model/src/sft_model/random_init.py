"""``init_nemo``: a randomly initialised model of a family, saved with its tokenizer (demos and tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from sft_model.config import ModelConfig


def init_config(family: str, vocab_size: int, *, pm=None, **sizes: Any) -> ModelConfig:
    """The family's default config with the given sizes (None values keep the defaults)."""
    from sft_model.families.registry import get_families

    return get_families(pm).get(family).default_config(**sizes).replace(vocab_size=vocab_size)


def init_nemo(family: str, tokenizer, vocab_size: int, output: str | Path, *, seed: int = 1234, pm=None,
              **sizes: Any) -> Path:
    """Build ``family`` with random weights (seeded) and write ``output`` with ``tokenizer`` embedded.

    ``tokenizer`` is a ``TokenizerFiles`` or a path (``.model``, ``tokenizer.json`` or its directory);
    ``vocab_size`` is the tokenizer's (the caller loads the tokenizer; sft_model does not tokenize).
    """
    from sft_model.builder import build_model
    from sft_model.nemo.io import save_nemo
    from sft_model.parallel import ensure_parallel_state

    cfg = init_config(family, vocab_size, pm=pm, **sizes)
    ensure_parallel_state()
    torch.manual_seed(seed)  # CPU initialisation draws from the default generator
    model = build_model(cfg)
    return save_nemo(output, model, cfg, tokenizer)
