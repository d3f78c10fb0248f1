"""Name -> implementation registries filled through ``sft_register_*`` hooks.

The host owns each registry; plugins only receive its ``register`` callback. Registering a name
twice is an error naming both plugins, so two plugins can never silently shadow each other.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pluggy

from sft_data.errors import PluginError, SftError


@dataclass(frozen=True)
class Entry:
    name: str
    value: Any
    plugin: str


class Registry:
    """Implementations of one kind (dataset formats, chat templates, ...) keyed by name."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def add(self, value: Any, plugin: str, name: str | None = None) -> None:
        name = name or getattr(value, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginError(f"plugin {plugin!r} registered a {self.kind} without a name: {value!r}")
        if name in self._entries:
            other = self._entries[name].plugin
            raise PluginError(f"{self.kind} {name!r} is registered by both {other!r} and {plugin!r}")
        self._entries[name] = Entry(name, value, plugin)

    def get(self, name: str) -> Any:
        try:
            return self._entries[name].value
        except KeyError:
            raise SftError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, self._entries, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown {self.kind} {name!r}{hint} (available: {', '.join(sorted(self._entries))})"

    def entry(self, name: str) -> Entry:
        self.get(name)
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries.values())

    def names(self) -> list[str]:
        return list(self._entries)

    def values(self) -> list[Any]:
        return [e.value for e in self._entries.values()]


def collect(pm: pluggy.PluginManager, hook_name: str, kind: str) -> Registry:
    """Call every implementation of a registration hook, remembering which plugin registered what.

    Implementations are called in registration order (built-in defaults first), so a duplicate
    name is reported against the plugin that came later.
    """
    registry = Registry(kind)
    caller = getattr(pm.hook, hook_name)
    for impl in caller.get_hookimpls():
        plugin = impl.plugin_name

        def register(value: Any, name: str | None = None, _plugin: str = plugin) -> None:
            registry.add(value, _plugin, name)

        try:
            impl.function(register=register)
        except SftError:
            raise
        except Exception as exc:  # a third-party plugin's bug must not look like ours
            raise PluginError(f"plugin {plugin!r} failed in {hook_name}: {exc}") from exc
    return registry
