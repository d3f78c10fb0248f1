"""The CLI answers without loading the heavy libraries: building the command list, `sft --help`,
`sft plugins --json`, `sft prepare` and `sft preview` never import torch, megatron-core,
transformers or matplotlib (each costs seconds); only the commands that run a model do."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "megatron", "transformers", "matplotlib")


def imported(*args: str, code: str | None = None) -> tuple[set[str], subprocess.CompletedProcess]:
    argv = [sys.executable, "-X", "importtime", *(["-c", code] if code else ["-m", "sft_cli", *args])]
    run = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=120)
    names = {line.rsplit("|", 1)[-1].strip() for line in run.stderr.splitlines() if line.startswith("import time:")}
    return names, run


def heavy(names: set[str]) -> list[str]:
    return sorted(n for n in names if n.split(".")[0] in HEAVY)


def test_building_the_command_list_imports_nothing_heavy():
    names, run = imported(code="from sft_core import get_plugin_manager\n"
                               "from sft_cli.app import create_cli\n"
                               "print(sorted(create_cli(get_plugin_manager()).commands))")
    assert run.returncode == 0, run.stderr[-2000:]
    assert {"train", "generate", "prepare", "merge-lora"} <= set(eval(run.stdout))
    # the measurement sees what modules import (importlib.import_module's own target is not timed)
    assert "sft_cli.commands.prepare" in names and "sft_data.formats.messages" in names
    assert heavy(names) == []


@pytest.mark.parametrize("args", [("--help",), ("plugins", "--json"), ("train", "--help"), ("generate", "--help")])
def test_help_and_plugin_listing_import_nothing_heavy(args):
    names, run = imported(*args)
    assert run.returncode == 0, run.stderr[-2000:]
    if args[0] == "plugins":
        assert "lora" in {p["name"] for p in json.loads(run.stdout)["plugins"]}
    assert heavy(names) == []


def test_prepare_and_preview_import_nothing_heavy(tiny_nemo, tmp_path):
    tok = str(tiny_nemo.parent / "tok.model")
    data = str(REPO / "examples/data/chat.jsonl")
    names, run = imported("prepare", data, "--tokenizer", tok, "--output", str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "out" / "stats.json").is_file() and heavy(names) == []
    names, run = imported("preview", data, "--tokenizer", tok, "-n", "1", "--plain")
    assert run.returncode == 0, run.stderr[-2000:]
    assert "⟦" in run.stdout and heavy(names) == []


def test_the_measurement_does_see_torch():
    names, run = imported(code="import torch")
    assert run.returncode == 0 and "torch" in heavy(names)
