"""pluggy's precedence, as docs/plugins.md states it: a plugin registered after the built-ins is
asked first and may decline; a plugin that implements only a CLI hook does not disturb training."""

from __future__ import annotations

import json
import textwrap

import pytest
from sft_core import get_plugin_manager, hookimpl
from sft_data.formats.detect import detect_format
from sft_data.registries import DataRegistries
from sft_data.tokenizers import load_tokenizer
from sft_data.tokenizers.sentencepiece import SentencePieceLoader


class MarkedSentencePiece:
    """Takes over the `.model` files it recognises (a name ending in `-marked.model`), wrapping the
    built-in SentencePiece tokenizer; declines every other path."""

    name = "marked_sentencepiece"

    def can_load(self, path):
        return path.name.endswith("-marked.model")

    def load(self, path):
        tokenizer = SentencePieceLoader().load(path)
        tokenizer.loaded_by = self.name
        return tokenizer


class LoaderPlugin:
    @hookimpl
    def sft_register_tokenizers(self, register):
        register(MarkedSentencePiece())


@pytest.fixture
def sp_model_path(tiny_nemo):
    return tiny_nemo.parent / "tok.model"  # the SentencePiece model the tiny .nemo was made with


def test_a_plugin_loader_is_asked_before_the_built_in_sentencepiece_loader(sp_model_path, tmp_path):
    registries = DataRegistries.from_plugin_manager(get_plugin_manager(load_entrypoints=False, plugins=[LoaderPlugin()]))
    assert registries.tokenizers.names()[0] == "marked_sentencepiece"
    marked = tmp_path / "tok-marked.model"
    marked.write_bytes(sp_model_path.read_bytes())
    assert load_tokenizer(marked, registries.tokenizers).loaded_by == "marked_sentencepiece"
    # declined: the built-in loader reads it
    assert not hasattr(load_tokenizer(sp_model_path, registries.tokenizers), "loaded_by")


class Transcript:
    """Claims prompt-response-shaped records that carry a `speaker` field, before the built-ins."""

    name = "transcript"

    def detect(self, record):
        return "speaker" in record

    def parse(self, record, options):
        raise AssertionError("not called by detection")


class FormatPlugin:
    @hookimpl
    def sft_register_dataset_formats(self, register):
        register(Transcript())


def test_a_plugin_format_claims_records_before_the_built_in_detector():
    registries = DataRegistries.from_plugin_manager(get_plugin_manager(load_entrypoints=False, plugins=[FormatPlugin()]))
    record = {"input": "hi", "output": "hello", "speaker": "bob"}
    assert detect_format(record, registries.formats, "x.jsonl:1").name == "transcript"
    assert detect_format({"input": "hi", "output": "hello"}, registries.formats, "x.jsonl:1").name == "prompt-response"
    builtin_only = DataRegistries.from_plugin_manager(get_plugin_manager(load_entrypoints=False))
    assert detect_format(record, builtin_only.formats, "x.jsonl:1").name == "prompt-response"


class LastResort:
    """`trylast`: asked after the built-ins even though it is registered after them."""

    @hookimpl(trylast=True)
    def sft_register_dataset_formats(self, register):
        register(Transcript())


def test_trylast_puts_a_plugin_behind_the_built_ins():
    registries = DataRegistries.from_plugin_manager(get_plugin_manager(load_entrypoints=False, plugins=[LastResort()]))
    assert registries.formats.names()[-1] == "transcript"
    record = {"input": "hi", "output": "hello", "speaker": "bob"}
    assert detect_format(record, registries.formats, "x.jsonl:1").name == "prompt-response"


@pytest.fixture
def cli_only_plugin(tmp_path, monkeypatch):
    """An installed distribution whose only hook is `sft_register_commands`, not marked optional."""
    (tmp_path / "thirdparty_cli_only.py").write_text(textwrap.dedent("""
        import click
        from sft_core import hookimpl

        @hookimpl
        def sft_register_commands(cli):
            cli.add_command(click.Command("cli-only", callback=lambda: click.echo("cli only")))
    """), encoding="utf-8")
    info = tmp_path / "thirdparty_cli_only-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-cli-only\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text("[sft]\nthirdparty_cli_only = thirdparty_cli_only\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))


def test_a_plugin_with_only_a_cli_hook_does_not_disturb_train(cli_only_plugin, tiny_nemo, short_train_config, tmp_path):
    from sft_trainer.run import train

    result = train(short_train_config(tiny_nemo, tmp_path / "run", "trainer.sft.max_steps=1"))  # the default manager
    assert result.state.step == 1
    assert get_plugin_manager().get_plugin("thirdparty_cli_only") is not None
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[0]["step"] == 1
