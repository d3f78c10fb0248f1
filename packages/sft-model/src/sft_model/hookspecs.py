"""Hooks that sft-model calls. Plugins implement them with ``sft_core.hookimpl``.

sft-core finds this module through sft-model's ``sft_hosts`` entry point: ``DEFAULT_PLUGINS`` are
sft-model's built-ins, registered like any plugin.
"""

from __future__ import annotations

from sft_core import Register, hookimpl, hookspec

__all__ = ["DEFAULT_PLUGINS", "LAYER", "Register", "hookimpl", "hookspec"]

LAYER = 1
DEFAULT_PLUGINS: tuple[str, ...] = ("sft_model.families.builtin",)


@hookspec
def sft_register_model_families(register: Register) -> None:
    """Register model families (``sft_model.families.ModelFamily``). Not firstresult; returns nothing.

    Called (through pluggy) whenever a family registry is built. A family has a ``name`` (what
    ``sft init --family`` accepts and ``model_config.yaml`` records), ``hf_model_types`` (the HF
    ``config.json`` ``model_type`` values it converts), HF config ⇄ ``ModelConfig`` methods and
    weight mappings both ways under canonical megatron-core names. Registering a name, or claiming
    an HF model type, that another plugin already registered is an error naming both plugins.
    """
