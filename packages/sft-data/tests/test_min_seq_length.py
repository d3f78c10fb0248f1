"""``min_seq_length``: samples shorter than it are dropped and counted, never silently; 1 keeps all."""

from __future__ import annotations

import json

import pytest
from sft_data.config import DataConfig
from sft_data.errors import SftError
from sft_data.prepare import prepare
from sft_data.store import PreparedDataset

RECORDS = [{"input": "a", "output": "b"}, {"input": "abcdef", "output": "ghij"}, {"input": "", "output": "c"},
           {"input": "abc", "output": "de"}]
# default template "{input} {output}" + EOS, one id per character: 4, 12, 3, 7 tokens


@pytest.fixture
def jsonl(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in RECORDS), encoding="utf-8")
    return path


def test_short_samples_are_dropped_and_counted(jsonl, char_tokenizer, tmp_path):
    result = prepare([jsonl], char_tokenizer, DataConfig(min_seq_length=5), tmp_path / "out")
    written = PreparedDataset(tmp_path / "out")
    kept = [char_tokenizer.decode(written.sequence(i)[0].tolist()) for i in range(written.num_sequences)]
    assert kept == ["abcdef ghij</s>", "abc de</s>"]
    assert result.stats["samples"] == 2 and result.stats["dropped"] == 2
    assert result.stats["dropped_reasons"] == {"shorter than min_seq_length (5 tokens)": 2}
    on_disk = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert on_disk["dropped_reasons"] == result.stats["dropped_reasons"]
    assert PreparedDataset(tmp_path / "out").num_bins == 2


def test_the_bound_is_inclusive_and_the_default_keeps_everything(jsonl, char_tokenizer):
    assert prepare([jsonl], char_tokenizer, DataConfig(min_seq_length=4)).stats["samples"] == 3  # a b</s> is 4
    default = prepare([jsonl], char_tokenizer, DataConfig())
    assert default.stats["samples"] == 4 and default.stats["dropped"] == 0


def test_the_length_is_measured_after_truncation(jsonl, char_tokenizer):
    # max 6: "abcdef ghij</s>" is cut to 6 tokens and kept; nothing is shorter than 6 after that but the rest
    result = prepare([jsonl], char_tokenizer, DataConfig(min_seq_length=6, max_seq_length=6))
    assert result.stats["samples"] == 2 and result.stats["truncated"] == 2
    assert result.stats["dropped_reasons"] == {"shorter than min_seq_length (6 tokens)": 2}


@pytest.mark.parametrize("value", [0, -1, 2049])
def test_out_of_range_is_refused(value):
    with pytest.raises(SftError, match=rf"^min_seq_length must be within 1..max_seq_length \(2048\), got {value}$"):
        DataConfig(min_seq_length=value)
