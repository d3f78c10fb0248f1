"""``get_plugin_manager()``: the one plugin manager for the CLI, the trainer, data and model alike.

It adds the hookspecs of every installed host package, registers the hosts' built-in plugins
(through the same hooks a third party implements), blocks what ``SFT_DISABLE_PLUGINS`` names, loads
the ``sft`` entry points one by one (a broken plugin is recorded by name and skipped) and runs
pluggy's ``check_pending()``. Hosts are found through the ``sft_hosts`` entry-point group: each
names its hookspecs module, which lists the host's built-ins in ``DEFAULT_PLUGINS`` and its place in
the layering in ``LAYER`` (lower layers register first). sft-core never imports a host.
There is no module-level manager; every caller builds one.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from types import ModuleType

import pluggy

from sft_core.errors import PluginError
from sft_core.markers import PROJECT

ENTRY_POINT_GROUP = "sft"
"""Third-party (and optional first-party) plugins: ``[project.entry-points.sft] name = "module"``."""
HOSTS_GROUP = "sft_hosts"
"""Host packages: ``[project.entry-points.sft_hosts] name = "package.hookspecs"``."""
DISABLE_ENV = "SFT_DISABLE_PLUGINS"


@dataclass(frozen=True)
class LoadFailure:
    """An entry point that could not be imported or registered; reported by name, never as a traceback."""

    name: str
    error: str


class SftPluginManager(pluggy.PluginManager):
    """pluggy's manager, remembering which plugins are built in and which failed to load."""

    def __init__(self) -> None:
        super().__init__(PROJECT)
        self.load_failures: list[LoadFailure] = []
        self.builtin: set[str] = set()
        self.hosts: list[str] = []
        self.versions: dict[str, str] = {}
        """Entry-point plugin name → its distribution's version."""


def blocked_from_env() -> tuple[str, ...]:
    raw = os.environ.get(DISABLE_ENV, "")
    return tuple(name.strip() for name in raw.split(",") if name.strip())


def installed_hosts() -> list[ModuleType]:
    """The hookspecs modules of every installed host package, lowest layer first."""
    modules = []
    for ep in metadata.entry_points(group=HOSTS_GROUP):
        try:
            modules.append(ep.load())
        except Exception as exc:  # a host that cannot import is an installation problem, named
            raise PluginError(f"sft host package {ep.value!r} cannot be imported ({type(exc).__name__}: {exc})") from None
    unique = {module.__name__: module for module in modules}
    return sorted(unique.values(), key=lambda m: (getattr(m, "LAYER", 0), m.__name__))


def get_plugin_manager(
    load_entrypoints: bool = True,
    blocked: Iterable[str] = (),
    *,
    hosts: Sequence[ModuleType] | None = None,
    plugins: Sequence[object] = (),
) -> SftPluginManager:
    """The manager with every host's hooks and built-ins, then ``plugins`` (objects or modules a
    caller registers, e.g. a test's), then the ``sft`` entry points; validated.

    ``hosts`` replaces the discovered host list (a test of one host alone).
    """
    pm = SftPluginManager()
    hosts = installed_hosts() if hosts is None else list(hosts)
    for name in (*blocked, *blocked_from_env()):
        pm.set_blocked(name)
    for host in hosts:
        pm.add_hookspecs(host)
        pm.hosts.append(host.__name__)
    for host in hosts:
        for dotted in getattr(host, "DEFAULT_PLUGINS", ()):
            if not pm.is_blocked(dotted):
                pm.register(importlib.import_module(dotted), name=dotted)
                pm.builtin.add(dotted)
    for plugin in plugins:
        pm.register(plugin)
    if load_entrypoints:
        _load_entrypoints(pm)
    _check_pending(pm)
    return pm


def _check_pending(pm: SftPluginManager) -> None:
    """pluggy's ``check_pending()``, with a message that names the plugin and the hook."""
    for name, caller in vars(pm.hook).items():
        if name.startswith("_") or caller.has_spec():
            continue
        for impl in caller.get_hookimpls():
            if not impl.optionalhook:
                raise PluginError(f"plugin {impl.plugin_name!r} implements {name!r}, a hook no installed sft "
                                  f"package declares (mark it optionalhook=True if that package is optional)")
    pm.check_pending()


def _load_entrypoints(pm: SftPluginManager) -> None:
    # pluggy's load_setuptools_entrypoints stops at the first broken plugin with a traceback; one
    # by one, a broken plugin is named and the others still load.
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:
            pm.load_failures.append(LoadFailure(ep.name, f"{type(exc).__name__}: {exc}"))
            continue
        try:
            pm.register(plugin, name=ep.name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            pm.load_failures.append(LoadFailure(ep.name, str(exc)))
            continue
        if ep.dist is not None:
            pm.versions[ep.name] = ep.dist.version
