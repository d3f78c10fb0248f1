"""sft init / inspect / convert as a user runs them; --tokenizer M.nemo; model errors as one line."""

from __future__ import annotations

import json

import pytest


def test_init_and_inspect(run, tiny):
    result = run("inspect", tiny, "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["family"] == "llama" and info["architecture"]["num_layers"] == 2
    assert info["architecture"]["encoder_seq_length"] == 128
    assert info["vocab_size"] == 800 and info["padded_vocab_size"] == 896
    assert info["tokenizer"] == {"library": "sentencepiece", "files": ["tok.model"], "embedded": True}
    text = run("inspect", tiny)
    assert "llama" in text.output and "parameters" in text.output and "tok.model" in text.output


def test_convert_round_trip_and_nemo_as_tokenizer(run, tiny, tmp_path):
    result = run("convert", "nemo-to-hf", tiny, tmp_path / "hf")
    assert result.exit_code == 0, result.output
    assert {"config.json", "model.safetensors", "tokenizer.model"} <= {p.name for p in (tmp_path / "hf").iterdir()}
    result = run("convert", "hf-to-nemo", tmp_path / "hf", tmp_path / "again.nemo")
    assert result.exit_code == 0, result.output
    from transformers import LlamaForCausalLM

    assert LlamaForCausalLM.from_pretrained(tmp_path / "hf").config.num_hidden_layers == 2
    # the embedded tokenizer serves wherever a tokenizer is asked for
    from sft_core import get_plugin_manager
    from sft_data.registries import DataRegistries
    from sft_data.tokenizers import load_tokenizer

    tok = load_tokenizer(tmp_path / "again.nemo", DataRegistries.from_plugin_manager(get_plugin_manager(False)).tokenizers)
    assert tok.kind == "sentencepiece" and tok.vocab_size == 800


def test_model_errors_are_one_line(run, tmp_path):
    bad = tmp_path / "bad.nemo"
    bad.write_bytes(b"garbage" * 10)
    result = run("inspect", bad)
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "not a readable .nemo archive" in result.stderr
    result = run("init", "--family", "nope", "--tokenizer", bad, "--output", tmp_path / "x.nemo")
    assert result.exit_code == 1 and "unknown model family 'nope'" in result.stderr


@pytest.mark.parametrize("args", [["init"], ["inspect"], ["convert"], ["convert", "hf-to-nemo"], ["convert", "nemo-to-hf"]])
def test_help(run, args):
    result = run(*args, "--help")
    assert result.exit_code == 0 and "Usage:" in result.output
