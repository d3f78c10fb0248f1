"""Range rules for config values, used by the schema's ``__post_init__`` methods.

Each rule raises ``ConfigValueError`` naming the field, the value and what is allowed; ``from_dict``
puts the section's dotted path in front, so the user reads ``config key 'model.optim.lr' must be a
finite number > 0, got nan``. Every float rule refuses NaN and infinity: a NaN compares false with
everything, so a plain ``x <= 0`` test lets it through to torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from sft_trainer.config.structured import ConfigValueError


def integer(obj: Any, name: str, minimum: int, maximum: int | None = None, *, also: Sequence[int] = ()) -> None:
    """``minimum <= value <= maximum`` (or one of the special values ``also``, such as -1 for "no limit")."""
    value = getattr(obj, name)
    if value in also and not isinstance(value, bool):
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (
            maximum is not None and value > maximum):
        allowed = f"an integer >= {minimum}" if maximum is None else f"an integer in [{minimum}, {maximum}]"
        if also:
            allowed += " or " + " or ".join(str(v) for v in also)
        raise ConfigValueError(name, value, allowed)


def number(obj: Any, name: str, low: float | None = None, high: float | None = None, *,
           low_open: bool = False, high_open: bool = False) -> None:
    """A finite number within the bounds (open or closed at each end; None: unbounded)."""
    check_number(getattr(obj, name), name, low, high, low_open=low_open, high_open=high_open)


def check_number(value: Any, key: str, low: float | None = None, high: float | None = None, *,
                 low_open: bool = False, high_open: bool = False) -> None:
    """``number`` for a value that is not an attribute (a list item such as ``betas[0]``)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        raise ConfigValueError(key, value, "a finite number" + _bounds(low, high, low_open, high_open))


def _bounds(low, high, low_open, high_open) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f" {'<' if high_open else '<='} {high:g}"
    return ""


def choice(obj: Any, name: str, options: Sequence[Any]) -> None:
    value = getattr(obj, name)
    if value not in options:
        allowed = repr(options[0]) if len(options) == 1 else "one of " + ", ".join(repr(o) for o in options)
        raise ConfigValueError(name, value, allowed)


def text(obj: Any, name: str, *, optional: bool = False) -> None:
    """A non-empty string (or None when ``optional``)."""
    value = getattr(obj, name)
    if value is None and optional:
        return
    if not isinstance(value, str) or not value.strip():
        raise ConfigValueError(name, value, "a non-empty string" + (" or null" if optional else ""))


def count_or_fraction(obj: Any, name: str, *, zero_ok: bool) -> None:
    """An int (a count) or a float (a fraction of an epoch's batches): ``int >= 0|1`` or a float
    in ``[0|(0, 1]``; 1 is a count and 1.0 the whole epoch, as in the reference."""
    value = getattr(obj, name)
    if isinstance(value, float):
        check_number(value, name, 0.0, 1.0, low_open=not zero_ok)
    else:
        integer(obj, name, 0 if zero_ok else 1)
