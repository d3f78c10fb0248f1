"""Calling the ``sft_on_*`` event hooks on rank 0; a plugin that raises is reported and muted."""

from __future__ import annotations

import sys
from typing import Any

import pluggy


class Events:
    def __init__(self, pm: pluggy.PluginManager, enabled: bool, stream=None):
        self.pm = pm
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.muted: dict[str, str] = {}

    def emit(self, hook_name: str, **kwargs: Any) -> None:
        if not self.enabled:
            return
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            if impl.plugin_name in self.muted:
                continue
            try:
                impl.function(**{name: kwargs[name] for name in impl.argnames})
            except Exception as exc:
                self.muted[impl.plugin_name] = f"{type(exc).__name__}: {exc}"
                print(f"warning: plugin {impl.plugin_name!r} failed in {hook_name} ({self.muted[impl.plugin_name]}); "
                      f"its events are disabled, training goes on", file=self.stream)
