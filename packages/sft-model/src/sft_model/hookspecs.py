"""Hooks that sft-model calls. Plugins implement them with ``HookimplMarker("sft")``."""

from __future__ import annotations

from collections.abc import Callable

import pluggy

hookspec = pluggy.HookspecMarker("sft")
hookimpl = pluggy.HookimplMarker("sft")

Register = Callable[..., None]


@hookspec
def sft_register_model_families(register: Register) -> None:
    """Register model families (``sft_model.families.ModelFamily``). Not firstresult; returns nothing.

    Called once whenever a family registry is built. A family has a ``name`` (what
    ``sft init --family`` accepts and ``model_config.yaml`` records), ``hf_model_types`` (the HF
    ``config.json`` ``model_type`` values it converts), HF config ⇄ ``ModelConfig`` methods and
    weight mappings both ways under canonical megatron-core names. Registering a name, or claiming
    an HF model type, that another plugin already registered is an error naming both plugins.
    """
