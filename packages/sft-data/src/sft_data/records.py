"""Reading JSON Lines files record by record, locating every problem as ``file:line: reason``.

Accepted as valid: a UTF-8 BOM, CRLF line ends, blank lines, no trailing newline, non-ASCII text,
arbitrarily long lines. Reported per line: invalid UTF-8, invalid JSON, a value that is not an
object. Reported per file: an empty file, a JSON array instead of JSON Lines.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sft_data.errors import RecordProblem, SftError

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
    """Yield a ``Record`` per non-blank line, or a ``RecordProblem`` where a line is bad."""
    path = Path(path)
    name = str(path)
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise SftError(f"{name}: cannot open ({exc.strerror})") from None
    seen_content = False
    with handle:
        for lineno, raw in enumerate(handle, start=1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                seen_content = True
                yield RecordProblem(name, lineno, f"invalid UTF-8 (byte {raw[exc.start]:#04x} at column {exc.start + 1})")
                continue
            text = text.strip()
            if not text:
                continue
            if not seen_content and text.startswith("["):
                yield RecordProblem(
                    name, lineno, "this is a JSON array, not JSON Lines: write one JSON object per line"
                )
                return
            seen_content = True
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                yield RecordProblem(name, lineno, f"invalid JSON ({exc.msg} at column {exc.colno})")
                continue
            if not isinstance(value, dict):
                yield RecordProblem(name, lineno, f"expected a JSON object, got {json_type(value)}")
                continue
            yield Record(name, lineno, value)
    if not seen_content:
        yield RecordProblem(name, 1, "the file is empty: no JSON records")
