"""Configuration that plugins own: each declares its typed section at a key path through
``sft_register_config_sections``; the host schema never names a plugin.

A section's dataclass fields are the keys under its ``path``: ``model.peft.lora_tuning`` (the
whole node belongs to the LoRA plugin) or ``exp_manager`` (a logger plugin's
``create_wandb_logger`` beside the host's keys). Values are typed and checked like the host's,
and an unknown key inside a plugin's node names the plugin. A key of a first-party plugin that
is not installed is accepted while it would change nothing, and is one line naming the plugin and
how to install it when it would.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pluggy
from sft_core import PluginError, Registry, collect

from sft_trainer.config.structured import ConfigError, from_dict


@dataclass(frozen=True)
class ConfigSection:
    """What a plugin registers: ``register(ConfigSection(path, schema))``."""

    path: str
    """Dotted key path the section's keys live under (``model.peft.lora_tuning``, ``exp_manager``)."""
    schema: type
    """A dataclass: one field per key, defaults, checks in ``__post_init__`` (raise ``SftError``)."""

    @property
    def name(self) -> str:
        return f"{self.path}:{self.schema.__name__}"

    @property
    def keys(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self.schema) if f.init]


@dataclass(frozen=True)
class AbsentPluginKey:
    """A first-party plugin's key, known to the host only to explain it when the plugin is missing."""

    key: str
    distribution: str
    takes_effect: Callable[[Any, dict], bool]
    """``(value, whole config) -> bool``: whether the value would change anything."""
    warn_only: bool = False
    """A logger the reference enables by default: its absence is a warning, not an error."""


def _get(data: dict, dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


FIRST_PARTY = (
    AbsentPluginKey("model.peft.lora_tuning", "sft-lora", lambda v, d: _get(d, "model.peft.peft_scheme") == "lora"),
    AbsentPluginKey("exp_manager.create_wandb_logger", "sft-wandb", lambda v, d: bool(v)),
    AbsentPluginKey("exp_manager.wandb_logger_kwargs", "sft-wandb",
                    lambda v, d: bool(_get(d, "exp_manager.create_wandb_logger"))),
    AbsentPluginKey("exp_manager.create_tensorboard_logger", "sft-tensorboard", lambda v, d: bool(v), warn_only=True),
)


def registered_sections(pm: pluggy.PluginManager) -> Registry:
    return collect(pm, "sft_register_config_sections", "config section")


def _owner_clash(sections: Registry, host_keys: Callable[[str], list[str]]) -> None:
    seen: dict[str, str] = {}
    for entry in sections:
        section = entry.value
        for key in section.keys:
            full = f"{section.path}.{key}"
            if full in seen:
                raise PluginError(f"config key {full!r} is declared by both {seen[full]!r} and {entry.plugin!r}")
            if key in host_keys(section.path):
                raise PluginError(f"plugin {entry.plugin!r} declares config key {full!r}, which sft-trainer owns")
            seen[full] = entry.plugin


def take_sections(data: dict, sections: Registry,
                  host_keys: Callable[[str], list[str] | None]) -> list[tuple[ConfigSection, Any]]:
    """Remove every plugin-owned key from ``data`` and build each plugin's section from them."""
    _owner_clash(sections, lambda path: host_keys(path) or [])
    built: list[tuple[ConfigSection, Any]] = []
    for entry in sections:
        section = entry.value
        node = _get(data, section.path)
        owned = host_keys(section.path) is None  # the host has no such node: it is the plugin's
        values = {}
        if isinstance(node, dict):
            for key in list(node):
                if key in section.keys or owned:
                    values[key] = node.pop(key)
            if owned and not node:
                parent, _, leaf = section.path.rpartition(".")
                holder = _get(data, parent) if parent else data
                if isinstance(holder, dict):
                    holder.pop(leaf, None)
        elif node is not None and owned:
            raise ConfigError(f"config key {section.path!r} must be a mapping, got {node!r}")
        try:
            built.append((section, from_dict(section.schema, values, section.path)))
        except ConfigError as exc:
            raise ConfigError(f"{exc} (a setting of plugin {entry.plugin!r})") from None
    return built


def absent_plugin_keys(data: dict, sections: Registry) -> tuple[list[tuple[str, Any, str]], list[str]]:
    """First-party plugin keys in ``data`` whose plugin is not installed: removed from ``data``.

    Returns (accepted without effect: key, value, reason) and warnings; raises for a key that
    would take effect."""
    declared = {f"{e.value.path}.{k}" for e in sections for k in e.value.keys} | {e.value.path for e in sections}
    accepted, warnings = [], []
    for spec in FIRST_PARTY:
        if spec.key in declared:
            continue
        parent, _, leaf = spec.key.rpartition(".")
        holder = _get(data, parent)
        if not isinstance(holder, dict) or leaf not in holder:
            continue
        value = holder.pop(leaf)
        reason = f"the {spec.distribution} plugin is not installed (pip install {spec.distribution})"
        if spec.takes_effect(value, data):
            if not spec.warn_only:
                raise ConfigError(f"config key {spec.key!r} needs the {spec.distribution} plugin, which is not "
                                  f"installed: pip install {spec.distribution}")
            warnings.append(f"{spec.key}={value!r} has no effect: {reason}")
        else:
            accepted.append((spec.key, value, reason))
    return accepted, warnings
