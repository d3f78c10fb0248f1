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



_UNITS = {"weeks": 604800, "days": 86400, "hours": 3600, "minutes": 60, "seconds": 1}
_DURATION = "a duration > 0: 'DD:HH:MM:SS' or a mapping of days/hours/minutes/seconds"


def seconds(value: Any) -> float:
    """Lightning's ``max_time`` (``DD:HH:MM:SS``, or a mapping of units) in seconds; ``ValueError``
    for anything else. A bare number is refused: YAML 1.1 reads an unquoted ``10:00:00:00`` as the
    base-60 number 2160000, and taking that for seconds would silently mean 25 days, not 10."""
    if isinstance(value, str):
        parts = value.strip().split(":")
        if len(parts) != 4 or not all(p.strip().isdigit() for p in parts):
            raise ValueError(value)
        total = float(sum(int(p) * unit for p, unit in zip(parts, (86400, 3600, 60, 1), strict=True)))
    elif isinstance(value, dict):
        if not value or set(value) - set(_UNITS) or any(isinstance(v, bool) or not isinstance(v, int | float)
                                                        for v in value.values()):
            raise ValueError(value)
        total = float(sum(v * _UNITS[k] for k, v in value.items()))
    else:
        raise ValueError(value)
    if not math.isfinite(total) or total <= 0:
        raise ValueError(value)
    return total


def duration(obj: Any, name: str) -> None:
    """``seconds`` accepts the value; a number gets the reason (YAML's base-60 reading of D:HH:MM:SS)."""
    value = getattr(obj, name)
    try:
        seconds(value)
    except ValueError:
        hint = (" (quoted in YAML: unquoted, 10:00:00:00 is read as the base-60 number 2160000; "
                "for seconds write {seconds: N})") if isinstance(value, int | float) and not isinstance(value, bool) else ""
        raise ConfigValueError(name, value, _DURATION + hint) from None
