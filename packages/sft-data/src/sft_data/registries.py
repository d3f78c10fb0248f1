"""The registries sft-data looks things up in, filled from one plugin manager."""

from __future__ import annotations

from dataclasses import dataclass

import pluggy
from sft_core import Registry, collect


@dataclass
class DataRegistries:
    """Everything sft-data looks up by name; each lists its entries in pluggy's call order, so a
    plugin's tokenizer loader or format is asked before the built-ins."""

    formats: Registry
    chat_templates: Registry
    tokenizers: Registry
    packing_algorithms: Registry

    @classmethod
    def from_plugin_manager(cls, pm: pluggy.PluginManager | None = None) -> DataRegistries:
        if pm is None:
            from sft_core import get_plugin_manager

            pm = get_plugin_manager()
        return cls(
            formats=collect(pm, "sft_register_dataset_formats", "dataset format"),
            chat_templates=collect(pm, "sft_register_chat_templates", "chat template"),
            tokenizers=collect(pm, "sft_register_tokenizers", "tokenizer loader"),
            packing_algorithms=collect(pm, "sft_register_packing_algorithms", "packing algorithm"),
        )
