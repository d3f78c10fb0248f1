"""Calling event hooks with one failure policy: a plugin that raises is reported once by name and
disabled for the rest of the run; the other plugins still get the event, and the caller goes on.
A plugin object with ``required = True`` (a run's own record, say) is the exception: its failure is
raised to the caller, which stops.

Calls go through pluggy (order, ``tryfirst``/``trylast``, wrappers, tracing as pluggy documents).
When an implementation raises, pluggy stops calling the rest, so the dispatcher calls the hook again
for the implementations that had not run yet (pluggy runs them from the end of ``get_hookimpls()``
backwards), leaving out the failed plugin. Wrappers around the hook therefore see that event twice.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

import pluggy

from sft_core.owners import implementation_codes, raising_plugin


class EventDispatcher:
    def __init__(self, pm: pluggy.PluginManager, *, enabled: bool = True, stream: TextIO | None = None):
        self.pm = pm
        self.enabled = enabled
        """False on ranks that must not call plugins (only global rank 0 does)."""
        self.stream = stream
        self.disabled: dict[str, str] = {}
        """Plugin name → the failure that disabled it."""

    def call(self, hook_name: str, **kwargs: Any) -> None:
        """Call event hook ``hook_name`` on every plugin not disabled (event hooks return nothing)."""
        if not self.enabled:
            return
        skip = set(self.disabled)
        while True:
            caller = self._caller(hook_name, skip)
            try:
                caller(**kwargs)
                return
            except Exception as exc:
                failed = raising_plugin(exc, implementation_codes(caller))
                if failed is None:  # not raised by an implementation: a bug of the caller's, not a plugin's
                    raise
                if getattr(self.pm.get_plugin(failed), "required", False):
                    raise
                self._disable(failed, hook_name, exc)
                skip.add(failed)
                skip |= self._already_ran(caller, failed)

    def _caller(self, hook_name: str, skip: set[str]) -> pluggy.HookCaller:
        caller = getattr(self.pm.hook, hook_name)
        plugins = [self.pm.get_plugin(name) for name in skip]
        plugins = [p for p in plugins if p is not None]
        return self.pm.subset_hook_caller(hook_name, plugins) if plugins else caller

    @staticmethod
    def _already_ran(caller: pluggy.HookCaller, failed: str) -> set[str]:
        """Plain implementations pluggy called before ``failed`` (those after it in the list)."""
        impls = [i for i in caller.get_hookimpls() if not (i.wrapper or i.hookwrapper)]
        names = [i.plugin_name for i in impls]
        return set(names[names.index(failed) + 1:]) if failed in names else set()

    def _disable(self, plugin: str, hook_name: str, exc: BaseException) -> None:
        self.disabled[plugin] = f"{type(exc).__name__}: {exc}"
        print(f"warning: plugin {plugin!r} failed in {hook_name} ({self.disabled[plugin]}); it is disabled, "
              f"the run goes on", file=self.stream or sys.stderr)
