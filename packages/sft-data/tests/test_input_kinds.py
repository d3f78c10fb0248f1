"""Parquet, Arrow (file and stream), ``datasets.save_to_disk`` directories, ``.jsonl.gz`` and JSON
arrays prepare to the same bytes as the JSON Lines file they were made from, bad rows included."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sft_core import SftError
from sft_data.config import DataConfig
from sft_data.inputs import open_input
from sft_data.prepare import STATS_FILE, prepare
from sft_data.store import HEADER

RECORDS = [
    {"messages": [{"role": "user", "content": "Hello!"}, {"role": "assistant", "content": "Hi, how can I help?"}]},
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Two plus two?"},
                  {"role": "assistant", "content": "Four.", "weight": 0}, {"role": "user", "content": "And 3+3?"},
                  {"role": "assistant", "content": "Six. ✓ café"}]},
    {"messages": [{"role": "user", "content": "only a question"}]},  # invalid: nothing to train on
    {"messages": [{"role": "user", "content": "a [bracket] and a \"quote\" \\ }"},
                  {"role": "assistant", "content": "line one\nline two"}]},
] * 3
ARRAYS = ("tokens.npy", "loss_mask.npy", "seq_offsets.npy", "bin_offsets.npy", "sample_index.npy")


def write_jsonl(path):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in RECORDS), encoding="utf-8")


def write_datasets_dir(directory, table, files=2):
    """The layout ``Dataset.save_to_disk`` writes: Arrow stream shards, state.json, dataset_info.json."""
    directory.mkdir()
    names = [f"data-{i:05d}-of-{files:05d}.arrow" for i in range(files)]
    per = -(-table.num_rows // files)
    for i, name in enumerate(names):
        with pa.ipc.new_stream(directory / name, table.schema) as writer:
            writer.write_table(table.slice(i * per, per), max_chunksize=2)
    (directory / "state.json").write_text(json.dumps({
        "_data_files": [{"filename": n} for n in names], "_fingerprint": "0", "_format_columns": None,
        "_format_kwargs": {}, "_format_type": None, "_output_all_columns": False, "_split": None}))
    (directory / "dataset_info.json").write_text(json.dumps({"features": {}, "splits": {}}))


def make_inputs(tmp_path) -> dict:
    paths = {"jsonl": tmp_path / "data.jsonl"}
    write_jsonl(paths["jsonl"])
    table = pa.Table.from_pylist(RECORDS)
    paths["parquet"] = tmp_path / "data.parquet"
    pq.write_table(table, paths["parquet"], row_group_size=5)
    paths["arrow-file"] = tmp_path / "data.arrow"
    with pa.ipc.new_file(paths["arrow-file"], table.schema) as writer:
        writer.write_table(table, max_chunksize=4)
    paths["arrow-stream"] = tmp_path / "stream.arrow"
    with pa.ipc.new_stream(paths["arrow-stream"], table.schema) as writer:
        writer.write_table(table, max_chunksize=4)
    paths["datasets"] = tmp_path / "saved"
    write_datasets_dir(paths["datasets"], table)
    paths["jsonl.gz"] = tmp_path / "data.jsonl.gz"
    paths["jsonl.gz"].write_bytes(gzip.compress(paths["jsonl"].read_bytes()))
    paths["json-array"] = tmp_path / "data.json"
    paths["json-array"].write_text(json.dumps(RECORDS, indent=2, ensure_ascii=False), encoding="utf-8")
    paths["json-array.gz"] = tmp_path / "array.json.gz"
    paths["json-array.gz"].write_bytes(gzip.compress(json.dumps(RECORDS).encode()))
    return paths


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return make_inputs(tmp_path_factory.mktemp("inputs"))


def test_every_kind_is_recognised_from_its_content(inputs):
    kinds = {name: open_input(path).kind for name, path in inputs.items()}
    assert kinds == {"jsonl": "jsonl", "parquet": "parquet", "arrow-file": "arrow", "arrow-stream": "arrow",
                     "datasets": "datasets", "jsonl.gz": "jsonl.gz", "json-array": "json-array",
                     "json-array.gz": "json-array.gz"}


@pytest.mark.parametrize("kind", ["parquet", "arrow-file", "arrow-stream", "datasets", "jsonl.gz", "json-array",
                                  "json-array.gz"])
def test_same_prepared_bytes_as_json_lines(inputs, char_tokenizer, tmp_path, kind):
    config = DataConfig(chat_template="chatml", pack_size=64, max_seq_length=64, skip_invalid=True,
                        packing_algorithm="first_fit_shuffle")
    want = prepare([inputs["jsonl"]], char_tokenizer, config, tmp_path / "jsonl")
    got = prepare([inputs[kind]], char_tokenizer, config, tmp_path / "other")
    for name in ARRAYS:
        assert (tmp_path / "other" / name).read_bytes() == (tmp_path / "jsonl" / name).read_bytes(), name
    rename = {str(inputs[kind]): str(inputs["jsonl"])}
    stats = json.loads((tmp_path / "other" / STATS_FILE).read_text())
    stats["formats"] = {rename[k]: v for k, v in stats["formats"].items()}
    assert stats == json.loads((tmp_path / "jsonl" / STATS_FILE).read_text())
    header = json.loads((tmp_path / "other" / HEADER).read_text())
    header["sources"] = [rename[s] for s in header["sources"]]
    header["formats"] = {rename[k]: v for k, v in header["formats"].items()}
    assert header == json.loads((tmp_path / "jsonl" / HEADER).read_text())
    # the invalid rows are the same rows: a JSON Lines line, a record's position in the others
    assert [(p.line, p.reason) for p in got.problems] == [(p.line, p.reason) for p in want.problems]
    assert [p.line for p in got.problems] == [3, 7, 11]
    assert all(str(p).startswith(f"{inputs[kind]}:") for p in got.problems)


def test_arrow_rows_read_in_batches_never_the_whole_file(inputs):
    for kind in ("parquet", "arrow-file", "datasets"):
        chunks = list(open_input(inputs[kind]).chunks(rows=3))
        sizes = [chunk.rows for chunk in chunks]
        assert sum(sizes) == len(RECORDS) and max(sizes) <= 3, kind


def test_an_arrow_null_reads_as_an_absent_key(tmp_path, char_tokenizer):
    # Arrow gives every struct row every field; the absent "weight" must not become "weight": null
    path = tmp_path / "data.parquet"
    pq.write_table(pa.Table.from_pylist(RECORDS[:2]), path)
    from sft_data.inputs import read_input

    records = list(read_input(path))
    assert [r.data for r in records] == RECORDS[:2]


def test_suffix_that_contradicts_the_content_and_other_directories(tmp_path, inputs):
    fake = tmp_path / "fake.parquet"
    fake.write_text('{"input": "a", "output": "b"}\n')
    with pytest.raises(SftError, match=r"fake\.parquet: not a Parquet file"):
        open_input(fake)
    fake_gz = tmp_path / "fake.jsonl.gz"
    fake_gz.write_text('{"input": "a", "output": "b"}\n')
    with pytest.raises(SftError, match=r"fake\.jsonl\.gz: not a gzip file"):
        open_input(fake_gz)
    splits = tmp_path / "dict"
    splits.mkdir()
    (splits / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    with pytest.raises(SftError, match=r"a datasets DatasetDict; give one split's directory \(train, test\)"):
        open_input(splits)
    with pytest.raises(SftError, match="not one written by datasets' save_to_disk"):
        open_input(tmp_path)
    escape = tmp_path / "escape"
    escape.mkdir()
    (escape / "state.json").write_text(json.dumps({"_data_files": [{"filename": "../data.parquet"}]}))
    with pytest.raises(SftError, match="is outside the directory"):
        open_input(escape)


def test_damaged_binary_inputs_are_one_line(tmp_path, char_tokenizer):
    table = pa.Table.from_pylist(RECORDS)
    broken = tmp_path / "broken.parquet"
    pq.write_table(table, broken)
    data = broken.read_bytes()
    broken.write_bytes(data[:4] + b"\0" * 200 + data[204:])
    with pytest.raises(SftError) as error:
        prepare([broken], char_tokenizer, DataConfig(chat_template="chatml", skip_invalid=True))
    assert str(error.value).startswith(f"{broken}: ") and "\n" not in str(error.value)
    truncated = tmp_path / "cut.jsonl.gz"
    truncated.write_bytes(gzip.compress(("".join(json.dumps(r) + "\n" for r in RECORDS) * 40).encode())[:600])
    result = prepare([truncated], char_tokenizer, DataConfig(chat_template="chatml", skip_invalid=True))
    assert result.problems[-1].reason.startswith("unreadable compressed data")
    assert result.stats["samples"] > 0
