"""Errors shown to a person as one line: the CLI prints ``str(error)`` and exits 1 for any
``SftError``; every sft package derives its own errors from it."""

from __future__ import annotations


class SftError(Exception):
    """A problem with the user's input, configuration or installation, shown as one line."""


class PluginError(SftError):
    """A plugin could not be loaded, registered something invalid, or failed in a hook."""
