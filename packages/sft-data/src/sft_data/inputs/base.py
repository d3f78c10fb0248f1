"""Chunks: how an input file travels from the process that reads it to the ones that build samples.

Reading a file (finding line ends, array elements, Arrow record batches) is cheap and sequential;
decoding what was read (UTF-8, JSON, Arrow rows to dicts) is not, so it happens where the chunk is
built into samples (``decode_chunk``), which may be a worker process. A chunk is plain picklable
data. Row numbers are 1-based and say where a record is in its file (see ``sft_data.inputs``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from sft_data.errors import RecordProblem
from sft_data.records import Record, json_type

CHUNK_ROWS = 64
"""Records per chunk: enough to amortise one hop to a worker process, small enough that workers
finish together (measured: 64 beats 128 and 256 with two workers), their memory stays bounded and a
preview stops early."""
CHUNK_BYTES = 4 << 20
"""A chunk is closed early once its raw text reaches this size (long conversations)."""

JSON_TEXTS = "json"
"""Items ``(row, raw bytes, where)``: one JSON value each; ``where`` is None for JSON Lines (the row
is the line) or the ``(line, column)`` in the file where a JSON array's element starts."""
ARROW = "arrow"
"""Items: ``(first row, Arrow IPC stream bytes of one record batch)``."""
RECORDS = "records"
"""Items: ``Record`` / ``RecordProblem`` already read (a format's own reader, problems found while reading)."""


@dataclass(frozen=True)
class Chunk:
    path: str
    kind: str
    items: Any
    rows: int
    """How many rows (records and problems) the chunk stands for, for progress."""


class Input(Protocol):
    """One input file (or ``datasets`` directory) opened for reading."""

    path: str
    kind: str
    """What it is: ``jsonl``, ``json-array``, ``parquet``, ``arrow``, ``datasets`` (``.gz`` appended when compressed)."""

    def chunks(self, rows: int = CHUNK_ROWS, max_bytes: int = CHUNK_BYTES) -> Iterator[Chunk]: ...

    def estimate_rows(self) -> int | None:
        """Rows in the file when that is cheap to know (for a progress bar), else None."""
        ...


def decode_chunk(chunk: Chunk) -> Iterator[Record | RecordProblem]:
    """The chunk's records, with a ``RecordProblem`` for each row that is not a JSON object."""
    if chunk.kind == RECORDS:
        yield from chunk.items
    elif chunk.kind == JSON_TEXTS:
        for row, raw, where in chunk.items:
            item = decode_json(chunk.path, row, raw, where)
            if item is not None:
                yield item
    elif chunk.kind == ARROW:
        from sft_data.inputs.arrow import decode_batch

        for first_row, payload in chunk.items:
            yield from decode_batch(chunk.path, first_row, payload)
    else:
        raise ValueError(f"unknown chunk kind {chunk.kind!r}")


def decode_json(path: str, row: int, raw: bytes, where: tuple[int, int] | None) -> Record | RecordProblem | None:
    """One JSON text as a record, or the problem with it (None: blank after all, e.g. a line of
    Unicode spaces). Columns of invalid UTF-8 count bytes, those of invalid JSON characters."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return RecordProblem(path, row, f"invalid UTF-8 (byte {raw[exc.start]:#04x} {_at(raw, exc.start, where)})")
    text = text.strip()
    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        what = exc.msg.removesuffix(" at")  # "Unterminated string starting at"
        if where is None:
            return RecordProblem(path, row, f"invalid JSON ({what} at column {exc.colno})")
        line = where[0] + exc.lineno - 1
        column = exc.colno + (where[1] - 1 if exc.lineno == 1 else 0)
        return RecordProblem(path, row, f"invalid JSON ({what} at line {line} column {column})")
    if not isinstance(value, dict):
        return RecordProblem(path, row, f"expected a JSON object, got {json_type(value)}")
    return Record(path, row, value)


def _at(raw: bytes, offset: int, where: tuple[int, int] | None) -> str:
    if where is None:
        return f"at column {offset + 1}"
    newlines = raw.count(b"\n", 0, offset)
    column = offset - raw.rfind(b"\n", 0, offset) if newlines else where[1] + offset
    return f"at line {where[0] + newlines} column {column}"
