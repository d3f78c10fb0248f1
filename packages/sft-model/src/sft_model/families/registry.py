"""The family registry, filled through ``sft_register_model_families``: sft-core's ``Registry``
plus the index from HF ``model_type`` to family."""

from __future__ import annotations

from typing import Any

import pluggy
from sft_core import Registry, collect

from sft_model.errors import FamilyError
from sft_model.families.base import ModelFamily


class FamilyRegistry(Registry):
    def __init__(self) -> None:
        super().__init__("model family", error=FamilyError, lookup_error=FamilyError)
        self._by_hf_type: dict[str, str] = {}

    def add(self, value: Any, plugin: str, name: str | None = None) -> None:
        for hf_type in getattr(value, "hf_model_types", ()):
            if hf_type in self._by_hf_type:
                other = self.entry(self._by_hf_type[hf_type]).plugin
                raise FamilyError(f"HF model type {hf_type!r} is claimed by both {other!r} and {plugin!r}")
        super().add(value, plugin, name)
        for hf_type in getattr(value, "hf_model_types", ()):
            self._by_hf_type[hf_type] = name or value.name

    def for_hf_config(self, hf: dict[str, Any]) -> ModelFamily:
        model_type = hf.get("model_type")
        if model_type not in self._by_hf_type:
            raise FamilyError(f"HF model type {model_type!r} is not supported "
                              f"(supported: {', '.join(sorted(self._by_hf_type))})")
        return self.get(self._by_hf_type[model_type])

    def for_model_config(self, cfg) -> ModelFamily:
        """The family recorded in the config, else guessed from its shape (reference files record none)."""
        if cfg.family:
            return self.get(cfg.family)
        return self.get("gpt2" if cfg.position_embedding_type == "learned_absolute" else "llama")


def get_families(pm: pluggy.PluginManager | None = None) -> FamilyRegistry:
    """Every registered model family (the installed plugins' too when ``pm`` is not given)."""
    if pm is None:
        from sft_core import get_plugin_manager

        pm = get_plugin_manager()
    registry = FamilyRegistry()
    collect(pm, "sft_register_model_families", "model family", registry)
    return registry
