"""Adapter-only ``.nemo`` files (what a LoRA run writes): recognise one, find the base it needs, and
load the base with the adapter applied through the PEFT method its plugin registered.

The reference restores such a file as ``model.restore_from_path=BASE model.peft.restore_from_path=ADAPTER``;
its saved config records the base under ``restore_from_path``, and so does ours, so that the base can
be found again. The host never names a method: the adapter's ``peft.peft_scheme`` selects one from
``sft_register_peft_methods``, whose ``layer_spec`` builds the adapter modules into the base exactly
as in training.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pluggy
from sft_core import SftError, collect

from sft_trainer.model_io import BASE_KEY, PeftBinding


class AdapterError(SftError):
    """An adapter-only .nemo that cannot be used as it was given."""


def _readable(path: Path) -> bool:
    return (path.is_file() or path.is_dir()) and os.access(path, os.R_OK)


@dataclass(frozen=True)
class AdapterNemo:
    path: Path
    config: Any
    """The adapter's ``sft_model.ModelConfig``: the base's architecture plus the training's data
    section (prompt template) and ``peft`` settings."""

    @property
    def peft(self) -> dict:
        return dict(self.config.extra.get("peft") or {})

    @property
    def scheme(self) -> str:
        return str(self.peft.get("peft_scheme"))

    @property
    def recorded_base(self) -> str | None:
        base = self.config.extra.get(BASE_KEY)
        return str(base) if base else None

    def needs_base(self, why: str) -> AdapterError:
        return AdapterError(
            f"{self.path} is an adapter-only .nemo ({self.scheme} adapters, no base weights; {why}): give its base "
            f"with --base BASE.nemo, or merge them first: sft merge-lora BASE.nemo {self.path} MERGED.nemo")

    def base_path(self, base: str | Path | None = None) -> Path:
        """``base`` when given, else the base the adapter records if it is there and readable."""
        if base is not None:
            return Path(base)
        recorded = self.recorded_base
        if recorded is None:
            raise self.needs_base("it does not record which base it was trained on")
        if not _readable(Path(recorded)):
            raise self.needs_base(f"trained on {recorded}, which is missing or unreadable")
        return Path(recorded)


def read_adapter(path: str | Path) -> AdapterNemo | None:
    """The adapter-only .nemo at ``path``, or None for a model with its own weights (a full
    fine-tune, a merged adapter, or a PEFT method that only freezes and so exports everything)."""
    from sft_model import read_config, weight_shapes

    config = read_config(path)
    scheme = (config.extra.get("peft") or {}).get("peft_scheme") or "none"
    if scheme == "none" or "embedding.word_embeddings.weight" in weight_shapes(path):
        return None
    return AdapterNemo(Path(path), config)


def peft_method(pm: pluggy.PluginManager | None, adapter: AdapterNemo):
    """The PEFT method the adapter was trained with, as a plugin registered it (``pm`` None: the
    installed plugins)."""
    if pm is None:
        from sft_core import get_plugin_manager

        pm = get_plugin_manager()
    methods = collect(pm, "sft_register_peft_methods", "PEFT method")
    if adapter.scheme not in methods:
        raise AdapterError(f"{adapter.path}: an adapter-only .nemo of PEFT method {adapter.scheme!r}, which no "
                           f"loaded plugin provides ({methods.unknown_message(adapter.scheme)})")
    return methods.get(adapter.scheme)


def load_with_base(base: str | Path, adapter: str | Path, peft_config: Any, method: Any, *, dtype=None):
    """``sft_model.LoadedModel`` of ``base`` built with ``method``'s adapter modules (its
    ``layer_spec``, as in training), base weights from ``base`` and adapter weights from ``adapter``."""
    from sft_model import load_nemo, load_weights

    binding = PeftBinding(method, peft_config)
    if not binding.adapter_only or binding.layer_spec_transform() is None:
        raise AdapterError(f"{adapter}: PEFT method {method.name!r} adds no adapter modules to load")
    loaded = load_nemo(base, dtype=dtype, layer_spec_transform=binding.layer_spec_transform(),
                       absent_ok=binding.is_adapter_key)
    load_weights(loaded.handle, adapter, select=binding.is_adapter_key)
    return loaded


def load_adapted(adapter: AdapterNemo, pm: pluggy.PluginManager | None, *, base: str | Path | None = None,
                 merged: bool = False, dtype=None):
    """The adapter's base with the adapter applied; ``merged``: folded into the base weights (the
    method's ``merge``), so the model has the base's plain layout (what an HF export needs)."""
    method = peft_method(pm, adapter)
    loaded = load_with_base(adapter.base_path(base), adapter.path, adapter.peft, method, dtype=dtype)
    if merged:
        merge = getattr(method, "merge", None)
        if merge is None:
            raise AdapterError(f"{adapter.path}: PEFT method {adapter.scheme!r} cannot fold its adapters into the "
                               f"base weights (it has no merge)")
        merge(loaded.model)
    return loaded


def load_for_use(path: str | Path, pm: pluggy.PluginManager | None, *, base: str | Path | None = None,
                 merged: bool = False, dtype=None):
    """``(LoadedModel, config)`` for ``sft generate`` / ``sft convert``: a full .nemo as it is, an
    adapter-only one on its base (``config`` is then the adapter's: the template it was trained with)."""
    from sft_model import load_nemo

    adapter = read_adapter(path)
    if adapter is None:
        if base is not None:
            raise AdapterError(f"{path} has its own weights (not an adapter-only .nemo); --base is only for adapters")
        loaded = load_nemo(path, dtype=dtype)
        return loaded, loaded.config
    return load_adapted(adapter, pm, base=base, merged=merged, dtype=dtype), adapter.config
