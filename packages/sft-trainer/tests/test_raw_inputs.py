"""Raw inputs given to ``sft train`` are prepared as ``sft prepare`` does: every input kind, worker
processes, a cache keyed by content (the tools file's too), and one line for a directory it cannot use."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sft_core import SftError
from sft_data.config import DataConfig
from sft_data.registries import DataRegistries
from sft_data.tokenizers.training import train_sentencepiece
from sft_trainer.data import cache_key, resolve_dataset

REPO = Path(__file__).resolve().parents[3]
RECORDS = [json.loads(line) for line in (REPO / "examples/data/train.jsonl").read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    from sft_data.tokenizers.sentencepiece import SentencePieceTokenizer

    return SentencePieceTokenizer(train_sentencepiece([REPO / "examples/data/corpus.txt"],
                                                      tmp_path_factory.mktemp("tok") / "t.model", 600))


def resolve(paths, tok, config, cache):
    return resolve_dataset(paths, tok, config, cache, DataRegistries.from_plugin_manager(), True, lambda: None)


def test_parquet_and_datasets_directories_train_like_their_json_lines(tmp_path, tok):
    table = pa.Table.from_pylist(RECORDS)
    pq.write_table(table, tmp_path / "train.parquet")
    saved = tmp_path / "saved"
    saved.mkdir()
    with pa.ipc.new_stream(saved / "data-00000-of-00001.arrow", table.schema) as writer:
        writer.write_table(table)
    (saved / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}))
    config = DataConfig(max_seq_length=128)
    want = resolve(str(REPO / "examples/data/train.jsonl"), tok, config, tmp_path / "cache")
    for source in (tmp_path / "train.parquet", saved):
        got = resolve(str(source), tok, config, tmp_path / "cache")
        assert got.directory != want.directory  # its own cache entry
        assert got.tokens.tobytes() == want.tokens.tobytes() and got.loss_mask.tobytes() == want.loss_mask.tobytes()
    assert len(list((tmp_path / "cache").iterdir())) == 3


def test_a_directory_that_is_no_dataset_is_one_line(tmp_path, tok):
    (tmp_path / "notes").mkdir()
    with pytest.raises(SftError, match="is a directory but neither a dataset written by `sft prepare` nor one "
                                       "written by datasets' save_to_disk"):
        resolve(str(tmp_path / "notes"), tok, DataConfig(), tmp_path / "cache")


def test_the_cache_key_follows_the_tools_file_content(tmp_path, tok):
    data = REPO / "examples/data/train.jsonl"
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps([{"type": "function", "function": {"name": "a"}}]))
    first = cache_key([data], tok, DataConfig(tools=str(tools)))
    tools.write_text(json.dumps([{"type": "function", "function": {"name": "b"}}]))
    assert cache_key([data], tok, DataConfig(tools=str(tools))) != first
    assert cache_key([data], tok, DataConfig(train_reasoning=False)) != cache_key([data], tok, DataConfig())
