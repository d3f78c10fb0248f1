"""A JSON array of records (``[{...}, {...}]``), read as a stream: the row is the element's position.

The file is never loaded whole. A scanner finds where each top-level element starts and ends (it
only follows strings and bracket depth, with regular expressions doing the byte work), and each
element is decoded on its own where its chunk is built, so one bad element is one located problem
and the others are still read. Problems in the array's own syntax (a missing comma, text after the
closing bracket, a file that ends inside the array) are reported at the row they occur at.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from sft_data.errors import RecordProblem
from sft_data.inputs.base import CHUNK_BYTES, CHUNK_ROWS, JSON_TEXTS, RECORDS, Chunk
from sft_data.inputs.lines import BOM, READ_ERRORS, open_binary

BLOCK = 1 << 20
_NON_SPACE = re.compile(rb"[^ \t\r\n]")
_STRUCTURE = re.compile(rb'[\[\]{}"]')
_IN_STRING = re.compile(rb'["\\]')
_SCALAR_END = re.compile(rb"[,\]\s]")

Element = tuple[int, bytes, tuple[int, int]]


class _Window:
    """The part of the file still needed, addressed by absolute byte offsets; the line count of
    everything before ``counted`` is kept so positions can be named by line and column."""

    def __init__(self, handle: BinaryIO):
        self.handle = handle
        self.data = b""
        self.base = 0
        self.eof = False
        self.line, self.line_start, self.counted = 1, 0, 0

    @property
    def end(self) -> int:
        return self.base + len(self.data)

    def more(self, keep: int) -> bool:
        """Read another block, forgetting the bytes before ``keep``; False at the end of the file."""
        if self.eof:
            return False
        block = self.handle.read(BLOCK)
        if not block:
            self.eof = True
            return False
        if keep > self.base:
            self._count(keep)
            self.data = self.data[keep - self.base:]
            self.base = keep
        self.data += block
        return True

    def byte(self, pos: int) -> int:
        return self.data[pos - self.base]

    def search(self, pattern: re.Pattern, pos: int, keep: int) -> int | None:
        """Absolute offset of ``pattern``'s next match at or after ``pos`` (reading on as needed)."""
        while True:
            match = pattern.search(self.data, max(pos - self.base, 0))
            if match:
                return self.base + match.start()
            pos = max(pos, self.end)
            if not self.more(keep):
                return None

    def position(self, offset: int) -> tuple[int, int]:
        self._count(offset)
        return self.line, offset - self.line_start + 1

    def _count(self, upto: int) -> None:
        if upto <= self.counted:
            return
        lo, hi = self.counted - self.base, upto - self.base
        newlines = self.data.count(b"\n", lo, hi)
        if newlines:
            self.line += newlines
            self.line_start = self.base + self.data.rfind(b"\n", lo, hi) + 1
        self.counted = upto


def elements(handle: BinaryIO, path: str) -> Iterator[Element | RecordProblem]:
    """``(row, raw bytes, (line, column))`` per element, or a problem, in file order."""
    w = _Window(handle)
    w.more(0)
    pos = w.search(_NON_SPACE, len(BOM) if w.data.startswith(BOM) else 0, 0)
    if pos is None or w.byte(pos) != ord("["):
        yield RecordProblem(path, 1, "expected a JSON array")
        return
    row = 0
    pos = w.search(_NON_SPACE, pos + 1, pos + 1)
    if pos is not None and w.byte(pos) == ord("]"):
        yield RecordProblem(path, 1, "the JSON array is empty: no records")
        pos = w.search(_NON_SPACE, pos + 1, pos + 1)
        if pos is not None:
            yield RecordProblem(path, 1, _after_end(w, pos))
        return
    missing_comma = False
    while pos is not None:
        end = _element_end(w, pos)
        row += 1
        if missing_comma:
            line, column = w.position(pos)
            yield RecordProblem(path, row, f"expected ',' before this element (line {line} column {column})")
            missing_comma = False
        else:
            yield row, w.data[pos - w.base:end - w.base], w.position(pos)
        pos = w.search(_NON_SPACE, end, end)
        if pos is None:
            break
        if w.byte(pos) == ord("]"):
            pos = w.search(_NON_SPACE, pos + 1, pos + 1)
            if pos is not None:
                yield RecordProblem(path, row + 1, _after_end(w, pos))
            return
        if w.byte(pos) == ord(","):
            comma = pos
            pos = w.search(_NON_SPACE, pos + 1, pos + 1)
            if pos is not None and w.byte(pos) == ord("]"):
                line, column = w.position(comma)
                yield RecordProblem(path, row + 1, f"a comma after the last element (line {line} column {column})")
                pos = w.search(_NON_SPACE, pos + 1, pos + 1)
                if pos is not None:
                    yield RecordProblem(path, row + 1, _after_end(w, pos))
                return
        else:
            missing_comma = True
    yield RecordProblem(path, row + 1, "the JSON array is not closed: the file ends before its ']'")


def _after_end(w: _Window, pos: int) -> str:
    line, column = w.position(pos)
    return f"text after the JSON array's closing ']' (line {line} column {column})"


def _element_end(w: _Window, start: int) -> int:
    """Where the element starting at ``start`` ends (exclusive); the end of the file if it never does."""
    first = w.byte(start)
    if first == ord('"'):
        return _string_end(w, start + 1, start)
    if first not in b"[{":
        end = w.search(_SCALAR_END, start + 1, start)
        return w.end if end is None else end
    depth, pos = 0, start
    while True:
        found = w.search(_STRUCTURE, pos, start)
        if found is None:
            return w.end
        char = w.byte(found)
        if char == ord('"'):
            pos = _string_end(w, found + 1, start)
            continue
        depth += 1 if char in b"[{" else -1
        pos = found + 1
        if depth == 0:
            return pos


def _string_end(w: _Window, pos: int, keep: int) -> int:
    while True:
        found = w.search(_IN_STRING, pos, keep)
        if found is None:
            return w.end
        if w.byte(found) == ord('"'):
            return found + 1
        pos = found + 2  # an escape: the next byte is the escaped one (read on if it is not here yet)


class JsonArrayInput:
    def __init__(self, path: str | Path, compressed: bool = False):
        self.path = str(path)
        self._file = Path(path)
        self.compressed = compressed
        self.kind = "json-array.gz" if compressed else "json-array"

    def estimate_rows(self) -> int | None:
        return None  # counting elements costs a full scan

    def chunks(self, rows: int = CHUNK_ROWS, max_bytes: int = CHUNK_BYTES) -> Iterator[Chunk]:
        items: list[Element] = []
        size = last_row = 0
        with open_binary(self._file, self.compressed) as handle:
            scanned = elements(handle, self.path)
            while True:
                try:
                    item = next(scanned, None)
                except READ_ERRORS as exc:
                    item = RecordProblem(self.path, last_row + 1, f"unreadable compressed data ({exc})")
                    scanned = iter(())
                if items and (item is None or isinstance(item, RecordProblem) or len(items) >= rows
                              or size >= max_bytes):
                    yield Chunk(self.path, JSON_TEXTS, items, len(items))
                    items, size = [], 0
                if item is None:
                    return
                if isinstance(item, RecordProblem):
                    last_row = item.line
                    yield Chunk(self.path, RECORDS, [item], 1)
                else:
                    items.append(item)
                    size += len(item[1])
                    last_row = item[0]
