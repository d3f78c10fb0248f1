"""The one pair of pluggy markers for project ``sft``: hosts declare hooks with ``hookspec``, plugins
implement them with ``hookimpl``. pluggy matches markers by project name, so a plugin may also write
its own ``pluggy.HookimplMarker("sft")``; importing these keeps one spelling."""

from __future__ import annotations

from collections.abc import Callable

import pluggy

PROJECT = "sft"
"""pluggy project name, hook prefix (``sft_``) and entry-point group for plugins."""

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[..., None]
"""The callback a registration hook receives: ``register(obj)`` or ``register(obj, name=...)``."""
