"""Name → implementation registries filled through ``sft_register_*`` hooks.

The host owns each registry; plugins only receive its ``register`` callback. The hook is called
through pluggy, so implementations run in pluggy's order — the last registered plugin first,
``tryfirst``/``trylast`` honoured, wrappers around them — and a registry lists its entries in that
order: where a host asks entries in turn ("which loader can read this file?", "which format is
this record?") a plugin is asked before the built-ins and may decline. Registering a name twice
is an error naming both plugins, so two plugins never silently shadow each other.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pluggy

from sft_core.errors import PluginError, SftError
from sft_core.owners import calling_plugin, implementation_codes, raising_plugin


def did_you_mean(name: str, options: Iterable[str], cutoff: float = 0.6) -> str:
    """``"; did you mean 'x'?"`` for the closest option, or ``""``."""
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=cutoff)
    return f"; did you mean {close[0]!r}?" if close else ""


@dataclass(frozen=True)
class Entry:
    name: str
    value: Any
    plugin: str


class Registry:
    """Implementations of one kind (dataset formats, chat templates, ...) keyed by name."""

    def __init__(self, kind: str, error: type[SftError] = PluginError, lookup_error: type[SftError] = SftError):
        self.kind = kind
        self.error = error
        """What a duplicate or nameless registration raises (a host may use its own subclass)."""
        self.lookup_error = lookup_error
        """What an unknown name raises."""
        self._entries: dict[str, Entry] = {}

    def add(self, value: Any, plugin: str, name: str | None = None) -> None:
        name = name or getattr(value, "name", None)
        if not isinstance(name, str) or not name:
            raise self.error(f"plugin {plugin!r} registered a {self.kind} without a name: {value!r}")
        if name in self._entries:
            other = self._entries[name].plugin
            raise self.error(f"{self.kind} {name!r} is registered by both {other!r} and {plugin!r}")
        self._entries[name] = Entry(name, value, plugin)

    def get(self, name: str) -> Any:
        return self.entry(name).value

    def entry(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise self.lookup_error(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        return (f"unknown {self.kind} {name!r}{did_you_mean(name, self._entries)} "
                f"(available: {', '.join(sorted(self._entries)) or 'none'})")

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return list(self._entries)

    def values(self) -> list[Any]:
        return [e.value for e in self._entries.values()]


def collect(pm: pluggy.PluginManager, hook_name: str, kind: str, registry: Registry | None = None) -> Registry:
    """Call a registration hook through pluggy and return what the plugins registered, each entry
    remembering its plugin. An exception from a plugin (other than an ``SftError``, which is already
    a message for the user) becomes a ``PluginError`` naming the plugin and the hook."""
    registry = registry if registry is not None else Registry(kind)
    caller = getattr(pm.hook, hook_name)
    codes = implementation_codes(caller)

    def register(value: Any, name: str | None = None) -> None:
        registry.add(value, calling_plugin(codes), name)

    try:
        caller(register=register)
    except SftError:
        raise
    except Exception as exc:  # a third-party plugin's bug must not look like ours
        plugin = raising_plugin(exc, codes) or "<unknown plugin>"
        raise PluginError(f"plugin {plugin!r} failed in {hook_name}: {type(exc).__name__}: {exc}") from exc
    return registry
