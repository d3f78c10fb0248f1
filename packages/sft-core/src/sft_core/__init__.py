"""sft_core: the plugin machinery every sft package shares. Depends on pluggy only.

- ``hookspec`` / ``hookimpl``: the markers of pluggy project ``sft``;
- ``get_plugin_manager()``: every installed host's hooks, built-ins, ``sft`` entry points;
- ``Registry`` / ``collect``: name → implementation registries filled through registration hooks;
- ``EventDispatcher``: event hooks with the report-once-and-disable failure policy;
- ``SftError`` / ``PluginError``: one-line errors for people.
"""

from sft_core.dispatch import EventDispatcher
from sft_core.errors import PluginError, SftError
from sft_core.manager import DISABLE_ENV, ENTRY_POINT_GROUP, LoadFailure, SftPluginManager, get_plugin_manager
from sft_core.markers import PROJECT, Register, hookimpl, hookspec
from sft_core.registry import Entry, Registry, collect, did_you_mean

__all__ = [
    "DISABLE_ENV",
    "ENTRY_POINT_GROUP",
    "PROJECT",
    "Entry",
    "EventDispatcher",
    "LoadFailure",
    "PluginError",
    "Register",
    "Registry",
    "SftError",
    "SftPluginManager",
    "collect",
    "did_you_mean",
    "get_plugin_manager",
    "hookimpl",
    "hookspec",
]
