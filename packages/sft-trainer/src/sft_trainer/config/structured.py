"""Dict/YAML <-> typed dataclass configs, strict about keys and types.

Every unknown key is an error naming its full dotted path and the closest valid key; every
wrongly typed value names its key and the expected type. ``key=value`` overrides (Hydra style,
``+key=value`` accepted too) are applied to the plain dict before conversion.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Union

import yaml
from sft_core import SftError


class ConfigError(SftError):
    """A bad configuration key or value."""


class ConfigValueError(ConfigError):
    """A value outside its allowed range; ``key`` is relative to the section that raised it until
    ``from_dict`` puts the section's path in front."""

    def __init__(self, key: str, value: Any, allowed: str):
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"config key {key!r} must be {allowed}, got {value!r}")

    def under(self, path: str) -> ConfigValueError:
        return ConfigValueError(f"{path}.{self.key}" if path else self.key, self.value, self.allowed)


def closest(name: str, options: list[str], path: str = "") -> str:
    match = difflib.get_close_matches(name, options, n=1, cutoff=0.5)
    if not match:
        return ""
    full = f"{path}.{match[0]}" if path else match[0]
    return f"; did you mean {full!r}?"


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        # bool is an int in Python; try exact kinds first so `1` stays an int and `0.5` a float
        for option in sorted(options, key=lambda o: o is float):
            if option is type(None):
                continue
            try:
                return _convert(value, option, path)
            except ConfigError:
                continue
        expected = " or ".join(_type_name(o) for o in options)
        raise ConfigError(f"config key {path!r} must be {expected}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"config key {path!r} must be a mapping, got {value!r}")
        return from_dict(tp, value, path)
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"config key {path!r} must be a list, got {value!r}")
        args = typing.get_args(tp)
        item_type = args[0] if args else Any
        items = [_convert(v, item_type, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key {path!r} must be a mapping, got {value!r}")
        return dict(value)
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        try:  # YAML 1.1 reads 3e-5 (no dot) as a string
            return float(value)
        except ValueError:
            pass
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is bool and isinstance(value, bool):
        return value
    if tp is str and isinstance(value, str):
        return value
    raise ConfigError(f"config key {path!r} must be {_type_name(tp)}, got {value!r}")


def from_dict(cls: type, data: dict[str, Any], path: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``; unknown keys and bad types are ``ConfigError``s."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = unknown[0]
        full = f"{path}.{key}" if path else key
        raise ConfigError(f"unknown config key {full!r}{closest(key, list(fields), path)}")
    kwargs = {}
    for name, value in data.items():
        full = f"{path}.{name}" if path else name
        kwargs[name] = _convert(value, hints[name], full)
    try:
        return cls(**kwargs)
    except ConfigValueError as exc:  # raised by this class's own __post_init__: its key lacks our path
        raise exc.under(path) from None
    except ConfigError:
        raise
    except SftError as exc:
        raise ConfigError(f"{path or 'config'}: {exc}") from None


def to_dict(obj: Any) -> Any:
    """Plain data for YAML/JSON: a config's keys (its plugins' sections merged in at their paths)."""
    if dataclasses.is_dataclass(obj):
        out = {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
        for section, value in getattr(obj, "sections", ()):
            node = out
            for part in section.path.split("."):
                node = node.setdefault(part, {})
            node.update(to_dict(value))
        return out
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def parse_override(text: str) -> tuple[str, Any]:
    """``a.b.c=value`` (or ``+a.b.c=value``); the value is read as YAML (``1e-4``, ``true``, ``[0.9, 0.98]``)."""
    key, sep, raw = text.partition("=")
    key = key.strip().lstrip("+")
    if not sep or not key:
        raise ConfigError(f"expected key=value, got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def apply_override(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set {key!r}: {part!r} is not a mapping")
        node = child
    node[parts[-1]] = value
