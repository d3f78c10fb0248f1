"""CLI test fixtures: the real app built from a fresh plugin manager, and a small tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def cli():
    from sft_cli.app import create_cli
    from sft_cli.plugins import get_plugin_manager

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
