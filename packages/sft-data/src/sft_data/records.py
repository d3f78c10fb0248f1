"""Records: one JSON object each, with the file and row it came from (``file:row: reason`` for problems).

Files are read by ``sft_data.inputs`` (JSON Lines, JSON arrays, Parquet, Arrow, ``datasets``
directories); reported per row: invalid UTF-8, invalid JSON, a value that is not an object.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sft_data.errors import RecordProblem

_JSON_TYPES = {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "boolean"}


@dataclass(frozen=True)
class Record:
    """One JSON object and where it came from."""

    path: str
    line: int
    data: dict[str, Any]

    @property
    def location(self) -> str:
        return f"{self.path}:{self.line}"


def json_type(value: Any) -> str:
    return "null" if value is None else _JSON_TYPES.get(type(value), type(value).__name__)


def read_records(path: str | Path) -> Iterator[Record | RecordProblem]:
    """Every record of ``path`` (JSON Lines, a JSON array, Parquet, ... see ``sft_data.inputs``), or
    a ``RecordProblem`` where a row is bad."""
    from sft_data.inputs import read_input  # it builds on this module

    return read_input(path)
