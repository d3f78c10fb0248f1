"""Which plugin is running: hooks are called through pluggy in one call, so the plugin behind a
``register`` callback or an exception is found from the stack, by the code objects of the hook's
implementations (a helper that an implementation calls is attributed to that implementation).
Two plugins that are instances of one class share a method's code object; the frame's first
argument (``self``) tells them apart."""

from __future__ import annotations

import sys
from types import CodeType, FrameType, TracebackType

import pluggy

Owners = dict[CodeType, list[tuple[object | None, str]]]


def implementation_codes(caller: pluggy.HookCaller) -> Owners:
    """Code object of each implementation of a hook → (bound instance or None, plugin name) pairs."""
    owners: Owners = {}
    for impl in caller.get_hookimpls():
        code = getattr(impl.function, "__code__", None)
        if code is not None:
            owners.setdefault(code, []).append((getattr(impl.function, "__self__", None), impl.plugin_name))
    return owners


def _owner(frame: FrameType, owners: Owners) -> str | None:
    candidates = owners.get(frame.f_code)
    if not candidates:
        return None
    if len(candidates) == 1:
        return candidates[0][1]
    names = frame.f_code.co_varnames
    instance = frame.f_locals.get(names[0]) if names else None
    return next((name for bound, name in candidates if bound is instance), candidates[0][1])


def calling_plugin(owners: Owners, default: str = "<unknown plugin>") -> str:
    """The plugin whose implementation is on the current stack (innermost first)."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        owner = _owner(frame, owners)
        if owner is not None:
            return owner
        frame = frame.f_back
    return default


def raising_plugin(exc: BaseException, owners: Owners) -> str | None:
    """The plugin whose implementation is innermost in the exception's traceback, if any."""
    found = None
    tb: TracebackType | None = exc.__traceback__
    while tb is not None:
        found = _owner(tb.tb_frame, owners) or found
        tb = tb.tb_next
    return found
