"""The dataset-format contract and field checks shared by the built-in formats."""

from __future__ import annotations

from typing import Any, Protocol

from sft_data.config import DataConfig
from sft_data.errors import RecordError
from sft_data.records import json_type
from sft_data.types import Parsed


class DatasetFormat(Protocol):
    """Registered through ``sft_register_dataset_formats``.

    Optionally a format also defines ``read(path) -> Iterator[Record | RecordProblem]`` to read
    files of a kind ``sft_data.inputs`` does not read (CSV...); it is used when ``--format`` names
    the format.
    Each ``Record`` carries its file and line so that problems are still reported as file:line.
    """

    name: str
    description: str

    def detect(self, record: dict[str, Any]) -> bool:
        """Whether ``record`` looks like this format (used by ``--format auto`` on the first record)."""
        ...

    def parse(self, record: dict[str, Any], config: DataConfig) -> Parsed:
        """The record as a ``PromptResponse`` or ``Conversation``; ``RecordError(reason)`` if invalid."""
        ...


def require_str(record: dict[str, Any], key: str, where: str = "") -> str:
    if key not in record:
        raise RecordError(f"missing field {where}{key!r}")
    value = record[key]
    if not isinstance(value, str):
        raise RecordError(f"field {where}{key!r} must be a string, got {json_type(value)}")
    return value


def optional_str(record: dict[str, Any], key: str, where: str = "") -> str | None:
    value = record.get(key)
    if value is not None and not isinstance(value, str):
        raise RecordError(f"field {where}{key!r} must be a string or null, got {json_type(value)}")
    return value


def require_list(record: dict[str, Any], key: str) -> list[Any]:
    if key not in record:
        raise RecordError(f"missing field {key!r}")
    value = record[key]
    if not isinstance(value, list):
        raise RecordError(f"field {key!r} must be a list, got {json_type(value)}")
    if not value:
        raise RecordError(f"empty conversation: {key!r} has no turns")
    return value


def require_object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RecordError(f"{where} must be an object, got {json_type(value)}")
    return value
