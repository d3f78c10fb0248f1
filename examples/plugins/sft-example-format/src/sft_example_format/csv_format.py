"""The ``csv`` format: a CSV file with a header row holding ``prompt`` and ``response`` columns.

sft-data reads JSON Lines by itself; a format that brings its own ``read(path)`` is used instead
when ``--format csv`` is given. ``read`` yields one ``Record`` per row with the line the row starts
on (quoted fields may span lines), or a ``RecordProblem``, so errors read ``file.csv:7: reason``.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sft_data.config import DataConfig
from sft_data.errors import RecordError, RecordProblem, SftError
from sft_data.formats.base import require_str
from sft_data.formats.prompt_response import template_fields
from sft_data.records import Record
from sft_data.types import PromptResponse

REQUIRED_COLUMNS = ("prompt", "response")


class CsvFormat:
    name = "csv"
    description = "CSV with a header row and prompt,response columns (other columns usable in prompt_template)"

    def read(self, path: str | Path) -> Iterator[Record | RecordProblem]:
        name = str(path)
        try:
            # utf-8-sig drops a BOM (spreadsheets write one); newline="" lets csv handle CRLF and
            # newlines inside quoted fields.
            with Path(path).open(encoding="utf-8-sig", newline="") as handle:
                yield from self._rows(csv.reader(handle, strict=True), name)
        except OSError as exc:
            raise SftError(f"{name}: cannot read ({exc.strerror})") from None

    def _rows(self, reader: Any, name: str) -> Iterator[Record | RecordProblem]:
        header: list[str] | None = None
        while True:
            start = reader.line_num + 1  # line_num counts physical lines read so far
            try:
                row = next(reader)
            except StopIteration:
                break
            except (csv.Error, UnicodeDecodeError) as exc:
                # the reader cannot resynchronise after a broken quote or bad bytes: stop here
                yield RecordProblem(name, start, f"unreadable CSV ({exc})")
                return
            if not row or all(not cell.strip() for cell in row):
                continue  # blank lines are allowed, as in JSONL files
            if header is None:
                header = [cell.strip() for cell in row]
                missing = [c for c in REQUIRED_COLUMNS if c not in header]
                if missing:
                    yield RecordProblem(name, start, f"the header has no {' or '.join(missing)} column "
                                                     f"(columns: {', '.join(header)})")
                    return
                continue
            if len(row) != len(header):
                yield RecordProblem(name, start, f"expected {len(header)} fields, got {len(row)}")
                continue
            yield Record(name, start, dict(zip(header, row, strict=True)))
        if header is None:
            yield RecordProblem(name, 1, "the file is empty: no CSV header")

    def detect(self, record: dict[str, Any]) -> bool:
        # --format auto reads JSON Lines, and a JSON record is not a CSV row: never claim one.
        return False

    def parse(self, record: dict[str, Any], config: DataConfig) -> PromptResponse:
        prompt = require_str(record, "prompt")
        response = require_str(record, "response")
        if not response.strip():
            raise RecordError("empty response")
        # {input}/{output} of the default template "{input} {output}" are the prompt and the
        # response; a custom prompt_template may name any other column too.
        columns = {**record, "input": prompt, "output": response}
        return PromptResponse({key: require_str(columns, key, "column ").strip(" ")
                               for key in template_fields(config.prompt_template)})
