"""Bad rows are located in every input kind (``file:row: reason``); JSON arrays are read as a stream."""

from __future__ import annotations

import gzip
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sft_data.config import DataConfig
from sft_data.errors import InvalidRecordsError, RecordProblem
from sft_data.inputs import json_array, read_input
from sft_data.prepare import prepare
from sft_data.records import Record

GOOD = {"input": "a", "output": "b"}


def rows(path):
    return [(type(i).__name__, i.line, i.data if isinstance(i, Record) else i.reason) for i in read_input(path)]


def test_bad_parquet_and_datasets_rows_are_numbered_across_batches_and_files(tmp_path, char_tokenizer):
    records = [GOOD] * 4 + [{"input": "a"}] + [GOOD] * 3
    table = pa.Table.from_pylist([{**r, "output": r.get("output")} for r in records])
    parquet = tmp_path / "d.parquet"
    pq.write_table(table, parquet, row_group_size=3)
    saved = tmp_path / "saved"
    saved.mkdir()
    for i, part in enumerate((table.slice(0, 3), table.slice(3))):
        with pa.ipc.new_stream(saved / f"data-{i}.arrow", table.schema) as writer:
            writer.write_table(part)
    (saved / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-0.arrow"},
                                                                  {"filename": "data-1.arrow"}]}))
    for path in (parquet, saved):
        with pytest.raises(InvalidRecordsError) as error:
            prepare([path], char_tokenizer, DataConfig())
        assert str(error.value).splitlines()[0] == f"{path}:5: missing field 'output'"


def test_bad_gzip_lines_are_located(tmp_path):
    path = tmp_path / "d.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"a": 1}\n\n{"a": \n[1]\n'))
    assert rows(path) == [("Record", 1, {"a": 1}),
                          ("RecordProblem", 3, "invalid JSON (Expecting value at column 6)"),
                          ("RecordProblem", 4, "expected a JSON object, got array")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # strings holding brackets, braces, escaped quotes and backslashes; nested values; a BOM
        ('\ufeff [ {"a": "]}[{\\"", "b": [[1], {"c": "\\\\"}]} ,\n{"a": 2}]',
         [("Record", 1, {"a": ']}[{"', "b": [[1], {"c": "\\"}]}), ("Record", 2, {"a": 2})]),
        ('[\n  {"a": 1},\n  {"a": 2,\n   "b": }\n]',
         [("Record", 1, {"a": 1}), ("RecordProblem", 2, "invalid JSON (Expecting value at line 4 column 9)")]),
        ('[{"a": 1}, 3, "x", [1]]',
         [("Record", 1, {"a": 1}), ("RecordProblem", 2, "expected a JSON object, got number"),
          ("RecordProblem", 3, "expected a JSON object, got string"),
          ("RecordProblem", 4, "expected a JSON object, got array")]),
        ('[{"a": 1}\n {"a": 2}, {"a": 3}]',
         [("Record", 1, {"a": 1}), ("RecordProblem", 2, "expected ',' before this element (line 2 column 2)"),
          ("Record", 3, {"a": 3})]),
        ('[{"a": 1},\n]', [("Record", 1, {"a": 1}),
                          ("RecordProblem", 2, "a comma after the last element (line 1 column 10)")]),
        ('[{"a": 1}, {"a": 2}', [("Record", 1, {"a": 1}), ("Record", 2, {"a": 2}),
                                 ("RecordProblem", 3, "the JSON array is not closed: the file ends before its ']'")]),
        ('[{"a": 1}, {"a": "unterminated}]', [
            ("Record", 1, {"a": 1}),
            ("RecordProblem", 2, "invalid JSON (Unterminated string starting at line 1 column 18)"),
            ("RecordProblem", 3, "the JSON array is not closed: the file ends before its ']'")]),
        ('[{"a": 1}]\n{"b": 2}', [("Record", 1, {"a": 1}),
                                  ("RecordProblem", 2, "text after the JSON array's closing ']' (line 2 column 1)")]),
        ("[ ]", [("RecordProblem", 1, "the JSON array is empty: no records")]),
        ('[{"a": "\xe9\xff"}]', None),  # invalid UTF-8, written as bytes below
    ],
    ids=["awkward-strings", "bad-element", "not-objects", "missing-comma", "trailing-comma", "not-closed",
         "unterminated-string", "text-after", "empty", "bad-utf8"],
)
@pytest.mark.parametrize("block", [1 << 20, 3])
def test_json_array_rows(tmp_path, monkeypatch, text, expected, block):
    monkeypatch.setattr(json_array, "BLOCK", block)  # 3 bytes: every token crosses a read
    path = tmp_path / "d.json"
    if expected is None:
        path.write_bytes(b'[{"a": "\xc3\xa9\xff"}]')
        expected = [("RecordProblem", 1, "invalid UTF-8 (byte 0xff at line 1 column 11)")]
    else:
        path.write_text(text, encoding="utf-8")
    assert rows(path) == expected


def test_a_json_array_is_read_as_a_stream(tmp_path, monkeypatch):
    monkeypatch.setattr(json_array, "BLOCK", 64)
    records = [{"input": f"question {i}", "output": "x" * 50} for i in range(200)]
    data = json.dumps(records).encode()
    handle = io.BytesIO(data)
    elements = json_array.elements(handle, "mem.json")
    first = next(elements)
    assert json.loads(first[1]) == records[0] and handle.tell() <= 2 * 64  # not the whole file first
    rest = list(elements)
    assert [json.loads(raw) for _, raw, _ in rest] == records[1:] and handle.tell() == len(data)


def test_problems_come_in_file_order_among_records(tmp_path, char_tokenizer):
    path = tmp_path / "d.json"
    path.write_text(json.dumps([GOOD, {"input": "x"}, GOOD])[:-1] + ", 5, " + json.dumps(GOOD) + "]")
    result = prepare([path], char_tokenizer, DataConfig(skip_invalid=True))
    assert [(p.line, p.reason) for p in result.problems] == [
        (2, "missing field 'output'"), (4, "expected a JSON object, got number")]
    assert result.stats["samples"] == 3 and result.stats["skipped_invalid"] == 2
    assert all(isinstance(p, RecordProblem) for p in result.problems)
