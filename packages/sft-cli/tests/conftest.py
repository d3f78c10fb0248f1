"""CLI test fixtures: the real app built from a fresh plugin manager, and a small tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def cli():
    from sft_cli.app import create_cli
    from sft_core import get_plugin_manager

    return create_cli(get_plugin_manager())


@pytest.fixture
def run(cli):
    """Invoke ``sft ARGS``; returns the click Result (stdout and stderr kept apart)."""

    def invoke(*args: str):
        return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)

    return invoke


@pytest.fixture(scope="session")
def tok_model(tmp_path_factory) -> Path:
    from sft_data.tokenizers.training import train_sentencepiece

    return train_sentencepiece(
        [REPO / "examples" / "data" / "corpus.txt"], tmp_path_factory.mktemp("tok") / "tok.model", vocab_size=800
    )


@pytest.fixture(scope="session")
def tiny(cli, tok_model, tmp_path_factory) -> Path:
    """A 2-layer, 64-wide Llama made by `sft init` (sequence length 128) with ``tok_model`` embedded."""
    out = tmp_path_factory.mktemp("model") / "tiny.nemo"
    result = CliRunner().invoke(cli, ["init", "--family", "llama", "--tokenizer", str(tok_model), "--output", str(out),
                                      "--num-layers", "2", "--hidden-size", "64", "--seq-length", "128"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out
