"""The family registry, filled through ``sft_register_model_families``.

sft_model never imports sft_data, so this is its own small registry rather than sft_data's. With
no plugin manager given, it builds a minimal one from sft_model's hookspecs and defaults.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

import pluggy

from sft_model import hookspecs
from sft_model.errors import FamilyError
from sft_model.families.base import ModelFamily


class FamilyRegistry:
    def __init__(self) -> None:
        self._families: dict[str, tuple[ModelFamily, str]] = {}
        self._by_hf_type: dict[str, str] = {}

    def add(self, family: ModelFamily, plugin: str) -> None:
        name = getattr(family, "name", None)
        if not isinstance(name, str) or not name:
            raise FamilyError(f"plugin {plugin!r} registered a model family without a name: {family!r}")
        if name in self._families:
            raise FamilyError(f"model family {name!r} is registered by both {self._families[name][1]!r} and {plugin!r}")
        for hf_type in getattr(family, "hf_model_types", ()):
            if hf_type in self._by_hf_type:
                other = self._families[self._by_hf_type[hf_type]][1]
                raise FamilyError(f"HF model type {hf_type!r} is claimed by both {other!r} and {plugin!r}")
        self._families[name] = (family, plugin)
        for hf_type in getattr(family, "hf_model_types", ()):
            self._by_hf_type[hf_type] = name

    def get(self, name: str) -> ModelFamily:
        if name not in self._families:
            close = difflib.get_close_matches(name, self._families, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise FamilyError(f"unknown model family {name!r}{hint} (available: {', '.join(self.names())})")
        return self._families[name][0]

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
        guess = "gpt2" if cfg.position_embedding_type == "learned_absolute" else "llama"
        return self.get(guess)

    def names(self) -> list[str]:
        return list(self._families)

    def plugin_of(self, name: str) -> str:
        self.get(name)
        return self._families[name][1]


def _own_plugin_manager() -> pluggy.PluginManager:
    from sft_model.plugins import DEFAULT_PLUGINS

    pm = pluggy.PluginManager("sft")
    pm.add_hookspecs(hookspecs)
    for dotted in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(dotted), name=dotted)
    return pm


def get_families(pm: pluggy.PluginManager | None = None) -> FamilyRegistry:
    """Call every ``sft_register_model_families`` implementation (defaults first) into a registry."""
    pm = pm or _own_plugin_manager()
    registry = FamilyRegistry()
    for impl in pm.hook.sft_register_model_families.get_hookimpls():

        def register(family: ModelFamily, _plugin: str = impl.plugin_name) -> None:
            registry.add(family, _plugin)

        try:
            impl.function(register=register)
        except FamilyError:
            raise
        except Exception as exc:  # a third-party plugin's bug must not look like ours
            raise FamilyError(f"plugin {impl.plugin_name!r} failed in sft_register_model_families: {exc}") from exc
    return registry
