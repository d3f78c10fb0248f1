"""Loading a tokenizer from a path through the registered loaders."""

from __future__ import annotations

from pathlib import Path

from sft_core import Registry

from sft_data.errors import SftError
from sft_data.tokenizers.base import Tokenizer


def load_tokenizer(path: str | Path, loaders: Registry | None = None) -> Tokenizer:
    """Load ``path`` with the first registered loader that accepts it."""
    if loaders is None:
        from sft_data.registries import DataRegistries

        loaders = DataRegistries.from_plugin_manager().tokenizers
    path = Path(path)
    if not path.exists():
        raise SftError(f"{path}: tokenizer not found")
    for loader in loaders.values():
        if loader.can_load(path):
            return loader.load(path)
    raise SftError(
        f"{path}: no tokenizer loader accepts this path "
        f"(loaders: {', '.join(loaders.names())}; expected a SentencePiece .model or an HF tokenizer.json)"
    )
