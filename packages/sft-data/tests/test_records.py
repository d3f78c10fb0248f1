"""Bad JSONL input is located as file:line; awkward but valid files are accepted."""

from __future__ import annotations

import json

import pytest
from sft_data.errors import RecordProblem
from sft_data.records import Record, read_records


def read(path):
    return list(read_records(path))


def test_awkward_but_valid_file(tmp_path):
    long_value = "word " * 50_000
    content = (
        b"\xef\xbb\xbf"  # UTF-8 BOM
        + json.dumps({"input": "caf\u00e9 \u65e5\u672c", "output": "ok"}, ensure_ascii=False).encode() + b"\r\n"
        + b"\r\n   \n"  # blank lines
        + json.dumps({"input": long_value, "output": "x"}).encode() + b"\n"
        + json.dumps({"input": "last", "output": "no newline"}).encode()
    )
    path = tmp_path / "awkward.jsonl"
    path.write_bytes(content)
    items = read(path)
    assert all(isinstance(i, Record) for i in items)
    assert [i.line for i in items] == [1, 4, 5]
    assert items[0].data["input"] == "café 日本"
    assert items[1].data["input"] == long_value


@pytest.mark.parametrize(
    ("content", "line", "reason"),
    [
        (b'{"a": 1}\n{"a": \n', 2, "invalid JSON"),
        (b'{"a": 1}\n[1, 2]\n', 2, "expected a JSON object, got array"),
        (b'"text"\n', 1, "expected a JSON object, got string"),
        (b'{"a": "\xff\xfe"}\n', 1, "invalid UTF-8"),
        (b'[{"a": 1}\n {"a": 2}]\n', 2, "expected ',' before this element (line 2 column 2)"),
        (b"", 1, "the file is empty"),
        (b"\n\n  \n", 1, "the file is empty"),
    ],
)
def test_bad_lines_are_located(tmp_path, content, line, reason):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    problems = [i for i in read(path) if isinstance(i, RecordProblem)]
    assert problems, "expected a problem"
    assert problems[0].line == line
    assert reason in problems[0].reason
    assert str(problems[0]).startswith(f"{path}:{line}: ")


def test_every_bad_line_is_reported_and_good_lines_still_read(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"a": 1}\nnope\n{"a": 2}\n3\n', encoding="utf-8")
    items = read(path)
    assert [(type(i).__name__, i.line) for i in items] == [
        ("Record", 1), ("RecordProblem", 2), ("Record", 3), ("RecordProblem", 4)]
