"""Plugin manager factory and the registries built from it.

There is no module-level manager: every caller builds one with ``get_plugin_manager()`` (the data
hooks only) or, in the full application, with ``build_plugin_manager`` given every host's hookspecs.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType

import pluggy

from sft_data import hookspecs
from sft_data.errors import PluginError
from sft_data.registry import Registry, collect

PROJECT = "sft"
ENTRY_POINT_GROUP = "sft"
DISABLE_ENV = "SFT_DISABLE_PLUGINS"

# Built-ins register through the same hooks a third party uses.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "sft_data.formats.builtin",
    "sft_data.templates.builtin",
    "sft_data.tokenizers.builtin",
    "sft_data.packing.builtin",
)


@dataclass
class LoadFailure:
    """An entry point that could not be imported; reported by name, never as a traceback."""

    name: str
    error: str


class SftPluginManager(pluggy.PluginManager):
    """A pluggy manager that also remembers entry points that failed to load."""

    def __init__(self) -> None:
        super().__init__(PROJECT)
        self.load_failures: list[LoadFailure] = []


def blocked_from_env() -> tuple[str, ...]:
    raw = os.environ.get(DISABLE_ENV, "")
    return tuple(name.strip() for name in raw.split(",") if name.strip())


def build_plugin_manager(
    hookspec_modules: Sequence[ModuleType],
    default_plugins: Iterable[str],
    *,
    load_entrypoints: bool = True,
    blocked: Iterable[str] = (),
    strict: bool = True,
) -> SftPluginManager:
    """Add hookspecs, register defaults, block, load ``sft`` entry points, validate.

    ``strict`` runs pluggy's ``check_pending()``: every hook a plugin implements must have a spec.
    A manager built for one host alone (e.g. sft-data used without the rest) passes
    ``strict=False`` because plugins may also implement hooks of hosts that are not installed.
    """
    pm = SftPluginManager()
    for module in hookspec_modules:
        if any(name.startswith(f"{PROJECT}_") for name in vars(module)):  # a host may have no hooks yet
            pm.add_hookspecs(module)
    blocked = tuple(blocked) + blocked_from_env()
    for name in blocked:
        pm.set_blocked(name)
    for dotted in default_plugins:
        if pm.is_blocked(dotted):
            continue
        pm.register(importlib.import_module(dotted), name=dotted)
    if load_entrypoints:
        _load_entrypoints(pm)
    if strict:
        try:
            pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {exc.plugin!r} implements an unknown hook: {exc}") from None
    return pm


def _load_entrypoints(pm: SftPluginManager) -> None:
    # pluggy's load_setuptools_entrypoints stops at the first broken plugin with a traceback; we
    # load one by one so a broken plugin is named and the others still load.
    from importlib import metadata

    for dist in metadata.distributions():
        for ep in dist.entry_points:
            if ep.group != ENTRY_POINT_GROUP or pm.get_plugin(ep.name) or pm.is_blocked(ep.name):
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                pm.load_failures.append(LoadFailure(ep.name, f"{type(exc).__name__}: {exc}"))
                continue
            try:
                pm.register(plugin, name=ep.name)
            except pluggy.PluginValidationError as exc:
                pm.load_failures.append(LoadFailure(ep.name, str(exc)))
                continue
            # keeps `sft plugins` able to show the version, as pluggy's own loader does
            pm._plugin_distinfo.append((plugin, dist))


def get_plugin_manager(load_entrypoints: bool = True, blocked: Iterable[str] = ()) -> SftPluginManager:
    """A manager with sft-data's hooks only, for using sft-data without the rest of sft."""
    return build_plugin_manager(
        [hookspecs], DEFAULT_PLUGINS, load_entrypoints=load_entrypoints, blocked=blocked, strict=False
    )


@dataclass
class DataRegistries:
    """Everything sft-data looks up by name, collected from one plugin manager."""

    formats: Registry
    chat_templates: Registry
    tokenizers: Registry
    packing_algorithms: Registry

    @classmethod
    def from_plugin_manager(cls, pm: pluggy.PluginManager | None = None) -> DataRegistries:
        pm = pm or get_plugin_manager()
        return cls(
            formats=collect(pm, "sft_register_dataset_formats", "dataset format"),
            chat_templates=collect(pm, "sft_register_chat_templates", "chat template"),
            tokenizers=collect(pm, "sft_register_tokenizers", "tokenizer loader"),
            packing_algorithms=collect(pm, "sft_register_packing_algorithms", "packing algorithm"),
        )
