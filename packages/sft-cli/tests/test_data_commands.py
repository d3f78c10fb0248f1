"""sft tokenizer train / preview / prepare as a user runs them, including bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import REPO

CHAT = REPO / "examples" / "data" / "chat.jsonl"
TRAIN = REPO / "examples" / "data" / "train.jsonl"


def test_tokenizer_train(run, tmp_path):
    result = run("tokenizer", "train", REPO / "examples/data/corpus.txt", "--vocab-size", "500", "--output", tmp_path / "t.model")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "t.model").is_file()
    assert "bos=1 eos=2 pad=3" in result.output


def test_preview_plain_marks_trained_spans(run, tok_model):
    result = run("preview", TRAIN, "--tokenizer", tok_model, "-n", "1", "--plain")
    assert result.exit_code == 0, result.output
    assert "examples/data/train.jsonl:1 (prompt-response)" in result.output
    assert "Spell cloud backwards.⟦ cloud backwards is duolc.</s>⟧" in result.output


def test_preview_nemo_chat_shows_turn_structure(run, tok_model):
    result = run("preview", CHAT, "--tokenizer", tok_model, "-n", "1", "--plain")
    assert result.exit_code == 0, result.output
    # the whole conversation encoded at once, as the reference: no word-start "▁" before the answer
    # (it follows the newline), and the bare one before "User" dropped between two control tokens
    assert "Assistant\n⟦cloud backwards is duolc.\n<extra_id_1>⟧User\nWhat is 2 plus 18?" in result.output


def test_prepare_packed_writes_dataset_and_stats(run, tok_model, tmp_path):
    out = tmp_path / "prepared"
    result = run("prepare", CHAT, "--tokenizer", tok_model, "--output", out, "--max-seq-length", "2048",
                 "--pack-size", "2048", "--packing-algorithm", "first_fit_decreasing")
    assert result.exit_code == 0, result.output
    stats = json.loads((out / "stats.json").read_text())
    assert stats["samples"] == 300 and stats["skipped_invalid"] == 0 and stats["dropped"] == 0
    assert stats["packing"]["algorithm"] == "first_fit_decreasing"
    assert stats["packing"]["pack_size"] == 2048
    assert 0.5 < stats["packing"]["efficiency"] <= 1.0
    from sft_data.store import PreparedDataset

    data = PreparedDataset(out)
    assert data.num_sequences == 300 and data.num_bins == stats["packing"]["bins"]
    assert int(data.sequence_lengths.sum()) == stats["tokens"]
    assert "detected format nemo-chat" in result.stderr


def test_prepare_with_overrides(run, tok_model, tmp_path):
    result = run("prepare", TRAIN, "--tokenizer", tok_model, "--output", tmp_path / "p", "add_bos=true", "add_eos=false")
    assert result.exit_code == 0, result.output
    from sft_data.store import PreparedDataset

    ids, _ = PreparedDataset(tmp_path / "p").sequence(0)
    assert ids[0] == 1 and ids[-1] != 2


def test_unknown_override_names_the_closest_key(run, tok_model, tmp_path):
    result = run("prepare", TRAIN, "--tokenizer", tok_model, "--output", tmp_path / "p", "add_boss=true")
    assert result.exit_code == 1
    assert "unknown data setting 'add_boss'; did you mean 'add_bos'?" in result.stderr
    assert "Traceback" not in result.output


BAD_RECORDS = [
    ("invalid JSON", '{"input": "a", "output": "b"}\n{"input": "a",\n', 2, "invalid JSON"),
    ("not an object", '{"input": "a", "output": "b"}\n["a"]\n', 2, "expected a JSON object, got array"),
    ("missing field", '{"input": "a", "output": "b"}\n{"input": "a"}\n', 2, "missing field 'output'"),
    ("wrong type", '{"input": "a", "output": "b"}\n{"input": "a", "output": 5}\n', 2, "must be a string, got number"),
    ("empty conversation", '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}\n'
     '{"messages": []}\n', 2, "empty conversation"),
    ("unknown role", '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}\n'
     '{"messages": [{"role": "wizard", "content": "a"}]}\n', 2, "unknown role 'wizard'"),
    ("no assistant", '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}\n'
     '{"messages": [{"role": "user", "content": "a"}]}\n', 2, "no assistant turn"),
    ("JSON array element", '[{"input": "a", "output": "b"},\n {"input": "a"}]\n', 2, "missing field 'output'"),
    ("empty file", "", 1, "the file is empty"),
]


@pytest.mark.parametrize(("name", "content", "line", "reason"), BAD_RECORDS, ids=[b[0] for b in BAD_RECORDS])
def test_bad_input_is_one_located_line_without_traceback(run, tok_model, tmp_path, name, content, line, reason):
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    result = run("prepare", path, "--tokenizer", tok_model, "--output", tmp_path / "out")
    assert result.exit_code == 1
    located = [ln for ln in result.stderr.splitlines() if ln.startswith(("Error: ", "")) and f"{path}:{line}: " in ln]
    assert len(located) == 1 and reason in located[0]
    assert "1 invalid record; pass --skip-invalid" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_invalid_utf8_is_located(run, tok_model, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"input": "a", "output": "b"}\n{"input": "\xc3\x28", "output": "b"}\n')
    result = run("prepare", path, "--tokenizer", tok_model, "--output", tmp_path / "out")
    assert result.exit_code == 1
    assert f"{path}:2: invalid UTF-8" in result.stderr


def test_skip_invalid_counts_in_stats(run, tok_model, tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"input": "a", "output": "b"}\nnot json\n{"input": "c"}\n{"input": "d", "output": "e"}\n')
    result = run("prepare", path, "--tokenizer", tok_model, "--output", tmp_path / "out", "--skip-invalid")
    assert result.exit_code == 0, result.output
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["samples"] == 2 and stats["skipped_invalid"] == 2


def test_many_errors_list_the_first_and_the_total(run, tok_model, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text("".join("nope\n" for _ in range(25)))
    result = run("prepare", path, "--tokenizer", tok_model, "--output", tmp_path / "out")
    assert result.exit_code == 1
    assert f"{path}:10: invalid JSON" in result.stderr and f"{path}:11:" not in result.stderr
    assert "25 invalid records (showing the first 10)" in result.stderr


def test_real_entry_point_prints_one_line_error(tmp_path):
    missing = tmp_path / "missing.model"
    proc = subprocess.run(
        [sys.executable, "-m", "sft_cli", "preview", str(TRAIN), "--tokenizer", str(missing)],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"Error: {missing}: tokenizer not found"


def test_prepare_reads_parquet_and_json_arrays_with_any_number_of_workers(run, tok_model, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = [json.loads(line) for line in TRAIN.read_text().splitlines() if line.strip()]
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "train.parquet")
    (tmp_path / "train.json").write_text(json.dumps(records, indent=2))
    outputs = []
    for workers in ("1", "2"):
        out = tmp_path / f"out{workers}"
        result = run("prepare", tmp_path / "train.parquet", tmp_path / "train.json", "--tokenizer", tok_model,
                     "--output", out, "--pack-size", "256", "--max-seq-length", "256", "--workers", workers)
        assert result.exit_code == 0, result.output
        outputs.append({p.name: p.read_bytes() for p in out.iterdir()})
    assert outputs[0] == outputs[1]
    stats = json.loads(outputs[0]["stats.json"])
    assert stats["samples"] == 2 * len(records) and set(stats["formats"].values()) == {"prompt-response"}
