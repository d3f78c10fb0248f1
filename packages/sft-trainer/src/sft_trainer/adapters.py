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


RESTORE_KEY = "model.peft.restore_from_path"


def _built_adapters(model_chunks, binding: PeftBinding) -> dict[str, tuple[int, ...]]:
    """Checkpoint key → global shape of every adapter tensor the model has, over all ranks."""
    import torch.distributed as dist

    local = {}
    for chunk in model_chunks:
        for item in chunk.sharded_state_dict(prefix="").values():
            # a factory (a gated fc1 split in two) stands for the tensors it builds, stored under its key
            built = item.build() if hasattr(item, "build") else [item]
            for tensor in built if isinstance(built, list | tuple) else [built]:
                key = getattr(tensor, "key", "")
                if binding.is_adapter_key(key) and not key.endswith("_extra_state") and hasattr(tensor, "global_shape"):
                    local[key] = tuple(tensor.global_shape)
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return local
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, local)
    return {k: v for part in gathered for k, v in part.items()}


def _difference(stored: dict, built: dict) -> str | None:
    for key in sorted(set(stored) | set(built)):
        if key not in built:
            return f"{key!r} is in the file but not built by this run"
        if key not in stored:
            return f"{key!r} is built by this run but not in the file"
        if stored[key] != built[key]:
            return f"{key!r} is {list(stored[key])} there, {list(built[key])} here"
    return None


def restore_adapter(base, path: str, scheme: str, base_path: str, *, is_main: bool) -> None:
    """``model.peft.restore_from_path``: the adapter weights of ``path`` loaded into ``base`` (a
    ``model_io.BaseModel`` read from ``base_path`` whose PEFT method has built its adapters).
    Refused, in one line, unless the file is an adapter-only .nemo of the same method holding
    exactly the adapter tensors (names and global shapes) built here: a tensor the file lacks would
    silently keep its initial value, one it has beyond them would be silently ignored."""
    from sft_model import ModelError, load_weights, weight_shapes

    adapter = read_adapter(path)
    if adapter is None:
        raise AdapterError(f"{RESTORE_KEY}={path} has its own weights (not an adapter-only .nemo); to train "
                           f"on from it, make it model.restore_from_path")
    if adapter.scheme != scheme:
        raise AdapterError(f"{RESTORE_KEY}={path} holds {adapter.scheme!r} adapters, but model.peft.peft_scheme "
                           f"is {scheme!r}")
    binding = base.peft
    stored = {k: tuple(v) for k, v in weight_shapes(path).items() if binding.is_adapter_key(k)}
    problem = _difference(stored, _built_adapters(base.chunks, binding))
    if problem:
        raise AdapterError(f"{RESTORE_KEY}={path}: its adapters are not the ones this run's model.peft settings "
                           f"build ({problem})")
    try:
        load_weights(base.loaded.handle, path, select=binding.is_adapter_key)
    except ModelError as exc:  # same names and shapes, other shards (another layer_selection)
        raise AdapterError(f"{RESTORE_KEY}: {exc}") from None
    recorded = adapter.recorded_base
    if is_main:
        print(f"adapters restored from {path}")
        if recorded and Path(recorded).resolve() != Path(base_path).resolve():
            print(f"warning: {path} was trained on {recorded}; it is applied to {base_path} here")
