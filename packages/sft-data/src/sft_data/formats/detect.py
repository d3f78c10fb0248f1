"""``--format auto``: pick the format from the first record."""

from __future__ import annotations

from typing import Any

from sft_core import Registry

from sft_data.errors import SftError


def detect_format(record: dict[str, Any], formats: Registry, location: str) -> Any:
    """The first registered format whose ``detect`` accepts the record."""
    for fmt in formats.values():
        try:
            if fmt.detect(record):
                return fmt
        except Exception:  # a plugin's detect must not crash detection of the others
            continue
    keys = ", ".join(sorted(record)[:8]) or "no fields"
    raise SftError(
        f"{location}: cannot detect the record format (fields: {keys}); "
        f"pass --format ({', '.join(formats.names())})"
    )
