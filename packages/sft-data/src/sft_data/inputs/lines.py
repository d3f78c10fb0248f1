"""JSON Lines, plain or gzip-compressed: one record per non-blank line; the row is the line number.

Accepted as valid: a UTF-8 BOM, CRLF line ends, blank lines, no trailing newline, arbitrarily long
lines. Lines are only split here; each is decoded (UTF-8, JSON) where its chunk is built.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from sft_data.errors import RecordProblem, SftError
from sft_data.inputs.base import CHUNK_BYTES, CHUNK_ROWS, JSON_TEXTS, RECORDS, Chunk

BOM = b"\xef\xbb\xbf"


def open_binary(path: Path, compressed: bool) -> BinaryIO:
    try:
        return gzip.open(path, "rb") if compressed else path.open("rb")
    except OSError as exc:
        raise SftError(f"{path}: cannot open ({exc.strerror})") from None


READ_ERRORS = (EOFError, OSError, zlib.error)
"""What reading a truncated or damaged gzip stream raises (gzip.BadGzipFile is an OSError)."""


class JsonLinesInput:
    def __init__(self, path: str | Path, compressed: bool = False):
        self.path = str(path)
        self._file = Path(path)
        self.compressed = compressed
        self.kind = "jsonl.gz" if compressed else "jsonl"

    def estimate_rows(self) -> int | None:
        total = 0
        with open_binary(self._file, self.compressed) as handle:
            try:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    total += block.count(b"\n")
            except READ_ERRORS:
                return None  # the read itself reports it, located
        return max(total, 1)

    def chunks(self, rows: int = CHUNK_ROWS, max_bytes: int = CHUNK_BYTES) -> Iterator[Chunk]:
        items: list[tuple[int, bytes, None]] = []
        size = 0
        lineno = 0
        seen_content = False
        with open_binary(self._file, self.compressed) as handle:
            lines = iter(handle)
            while True:
                try:
                    raw = next(lines)
                except StopIteration:
                    break
                except READ_ERRORS as exc:
                    if items:
                        yield Chunk(self.path, JSON_TEXTS, items, len(items))
                    problem = RecordProblem(self.path, lineno + 1, f"unreadable compressed data ({exc})")
                    yield Chunk(self.path, RECORDS, [problem], 1)
                    return
                lineno += 1
                if lineno == 1 and raw.startswith(BOM):
                    raw = raw[len(BOM):]
                if not raw.strip():
                    continue
                seen_content = True
                items.append((lineno, raw, None))
                size += len(raw)
                if len(items) >= rows or size >= max_bytes:
                    yield Chunk(self.path, JSON_TEXTS, items, len(items))
                    items, size = [], 0
        if items:
            yield Chunk(self.path, JSON_TEXTS, items, len(items))
        if not seen_content:
            yield Chunk(self.path, RECORDS, [RecordProblem(self.path, 1, "the file is empty: no JSON records")], 1)
