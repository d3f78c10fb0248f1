"""Errors raised by sft_model for problems a person can fix (bad file, bad config, bad request).

They derive from ``ModelError`` (an ``sft_core.SftError``) and carry one-line messages; the CLI
prints ``str(error)`` and exits 1.
"""

from __future__ import annotations

from sft_core.errors import SftError


class ModelError(SftError):
    """A problem with a model file, a model config or a model request, shown as one line."""


class ModelConfigError(ModelError):
    """A model config value is missing, of the wrong type or inconsistent with another one."""


class NemoArchiveError(ModelError):
    """A ``.nemo`` archive is unreadable, truncated, corrupt or hostile (unsafe member)."""


class ConversionError(ModelError):
    """A Hugging Face checkpoint cannot be converted (unknown architecture, missing tensor...)."""


class FamilyError(ModelError):
    """An unknown model family, or two plugins registering the same family name."""
