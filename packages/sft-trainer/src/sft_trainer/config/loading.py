"""Reading a training config the way the reference does, with OmegaConf: a YAML file, ``key=value``
overrides (Hydra style, ``+key=value`` too), ``${...}`` interpolations (absolute and relative)
resolved, ``???`` a one-line error naming the missing key. The resolved tree is then split three
ways: keys of the reference's that have no effect here (listed once, with the reason), plugin
sections (each plugin's own typed dataclass) and the host schema (``TrainConfig``), which is strict
about unknown keys, types and ranges.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pluggy
import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from sft_trainer.config.reference_keys import UnusedKey, take_unused
from sft_trainer.config.schema import TrainConfig
from sft_trainer.config.sections import absent_plugin_keys, registered_sections, take_sections
from sft_trainer.config.structured import ConfigError, from_dict, parse_override, to_dict


def _one_line(exc: OmegaConfBaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def read_config_file(path: str | Path) -> DictConfig:
    """A YAML config file as OmegaConf reads it (interpolations still unresolved)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from None
    try:
        loaded = OmegaConf.create(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{path}: {_one_line(exc)}") from None
    if not isinstance(loaded, DictConfig):
        raise ConfigError(f"{path}: a config file must be a mapping at the top level")
    return loaded


def _apply_overrides(config: DictConfig, overrides: Sequence[str]) -> None:
    for text in overrides:
        key, value = parse_override(text)
        try:
            OmegaConf.update(config, key, value, merge=True, force_add=True)
        except OmegaConfBaseException as exc:
            raise ConfigError(f"cannot set {key!r}: {_one_line(exc)}") from None
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"cannot set {key!r}: {exc}") from None


def resolve(config: DictConfig) -> dict[str, Any]:
    """The plain tree with every interpolation resolved; a ``???`` left is an error naming its key."""
    try:
        return OmegaConf.to_container(config, resolve=True, throw_on_missing=True)  # type: ignore[return-value]
    except MissingMandatoryValue as exc:
        key = exc.full_key or "?"
        raise ConfigError(f"config key {key!r} is required (??? in the config): set it, e.g. {key}=...") from None
    except OmegaConfBaseException as exc:
        where = f"config key {exc.full_key!r}: " if getattr(exc, "full_key", None) else ""
        raise ConfigError(f"{where}cannot resolve an interpolation ({_one_line(exc)})") from None


def _host_keys(path: str) -> list[str] | None:
    """The host schema's keys under ``path``, or None when the host has no such section."""
    cls: Any = TrainConfig
    for part in path.split("."):
        if not dataclasses.is_dataclass(cls) or part not in {f.name for f in dataclasses.fields(cls) if f.init}:
            return None
        cls = typing.get_type_hints(cls)[part]
    return [f.name for f in dataclasses.fields(cls) if f.init] if dataclasses.is_dataclass(cls) else None


def build_config(data: dict[str, Any] | DictConfig, overrides: Sequence[str] = (),
                 pm: pluggy.PluginManager | None = None) -> TrainConfig:
    """``data`` (a mapping, or a file read by ``read_config_file``) with overrides applied, resolved,
    checked and typed."""
    if pm is None:
        from sft_core import get_plugin_manager

        pm = get_plugin_manager()
    config = data if isinstance(data, DictConfig) else OmegaConf.create(dict(data))
    config = config.copy()
    _apply_overrides(config, overrides)
    tree = resolve(config)
    unused: list[UnusedKey] = take_unused(tree)
    sections = registered_sections(pm)
    accepted, warnings = absent_plugin_keys(tree, sections)
    unused += [UnusedKey(key, value, reason) for key, value, reason in accepted]
    plugin_sections = take_sections(tree, sections, _host_keys)
    cfg = from_dict(TrainConfig, tree)
    cfg.sections = plugin_sections
    cfg.unused = unused
    cfg.warnings = warnings + cfg.model.notes()
    return cfg


def load_config(path: str | Path | None, overrides: Sequence[str] = (),
                pm: pluggy.PluginManager | None = None) -> TrainConfig:
    return build_config(read_config_file(path) if path else {}, overrides, pm)


def dump_config(config: TrainConfig) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)
