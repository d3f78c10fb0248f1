"""Hooks that sft-trainer calls. Plugins implement them with ``HookimplMarker("sft")``."""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("sft")
hookimpl = pluggy.HookimplMarker("sft")
