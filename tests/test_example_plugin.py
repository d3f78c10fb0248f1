"""The example third-party plugin, installed as a user would, is found by `sft` and used.

examples/plugins/sft-example-format is built into a wheel by the workspace's own hatchling and
installed without an index (with its dist-info and entry point) into a separate directory; `sft`
runs with that directory on PYTHONPATH, so the workspace environment never depends on the example.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "plugins" / "sft-example-format"

CSV = (
    "prompt,response,topic\n"
    "What is 2+2?,4,math\n"
    "\n"
    '"Say ""hi""\non two lines",hi,chat\n'
    "Too,many,fields,here\n"
    "Capital of France?,,geo\n"
    "Colour of the sky?,blue,nature\n"
)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    uv = shutil.which("uv")
    assert uv, "uv is needed (the README's set-up installs it)"
    target = tmp_path_factory.mktemp("site")
    wheels = tmp_path_factory.mktemp("wheels")
    # built by the workspace's own hatchling (a dev dependency), so nothing comes from an index or a cache
    build = subprocess.run(
        [uv, "build", "--quiet", "--wheel", "--no-build-isolation", "--python", sys.executable,
         "--out-dir", str(wheels), str(EXAMPLE)], capture_output=True, text=True,
    )
    assert build.returncode == 0, build.stderr
    # --no-deps: sft-data, click and pluggy come from the workspace environment
    install = subprocess.run(
        [uv, "pip", "install", "--quiet", "--no-index", "--no-deps", "--python", sys.executable,
         "--target", str(target), *map(str, wheels.glob("sft_example_format-*.whl"))],
        capture_output=True, text=True,
    )
    assert install.returncode == 0, install.stderr
    return target


def sft(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SFT_DISABLE_PLUGINS"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH")) if p)
    env["COLUMNS"] = "1000"  # rich wraps long file:line messages at the terminal width otherwise
    return subprocess.run([sys.executable, "-m", "sft_cli", *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=120)


def test_example_plugin_is_not_a_workspace_dependency():
    from importlib.util import find_spec

    assert find_spec("sft_example_format") is None
    assert "sft-example-format" not in (REPO / "uv.lock").read_text()


def test_sft_plugins_lists_the_installed_example(site):
    run = sft(site, "plugins", "--json")
    assert run.returncode == 0, run.stderr
    listed = {p["name"]: p for p in json.loads(run.stdout)["plugins"]}
    assert listed["example_format"]["version"] == "0.1.0"
    assert listed["example_format"]["hooks"] == ["sft_register_commands", "sft_register_dataset_formats"]


def test_sft_prepare_reads_csv_through_the_plugin(site, tmp_path):
    from sft_data.tokenizers.training import train_sentencepiece

    tok = train_sentencepiece([REPO / "examples" / "data" / "corpus.txt"], tmp_path / "tok.model", vocab_size=400)
    data = tmp_path / "qa.csv"
    data.write_text(CSV, encoding="utf-8")
    out = tmp_path / "prep"
    run = sft(site, "prepare", "--tokenizer", str(tok), "--format", "csv", "--skip-invalid",
              "--output", str(out), str(data))
    assert run.returncode == 0, run.stderr
    stats = json.loads((out / "stats.json").read_text())
    assert stats["samples"] == 3 and stats["skipped_invalid"] == 2
    assert stats["formats"] == {str(data): "csv"}
    # rows are located by the line they start on: the quoted two-line row starts on line 4
    assert f"{data}:6: expected 3 fields, got 4" in run.stderr
    assert f"{data}:7: empty response" in run.stderr

    # without --skip-invalid the same file fails, naming every bad row; nothing is written
    failed = sft(site, "prepare", "--tokenizer", str(tok), "--format", "csv", "--output",
                 str(tmp_path / "nothing"), str(data))
    assert failed.returncode != 0
    assert f"{data}:6:" in failed.stderr + failed.stdout
    assert not (tmp_path / "nothing").exists()


def test_the_plugin_command_converts_csv_to_jsonl(site, tmp_path):
    data = tmp_path / "qa.csv"
    data.write_text("prompt,response\nWhat is 2+2?,4\n\"multi\nline\",ok\n", encoding="utf-8")
    target = tmp_path / "qa.jsonl"
    run = sft(site, "csv-to-jsonl", str(data), str(target))
    assert run.returncode == 0, run.stderr
    assert [json.loads(line) for line in target.read_text().splitlines()] == [
        {"input": "What is 2+2?", "output": "4"}, {"input": "multi\nline", "output": "ok"},
    ]


def test_the_plugin_command_replaces_a_target_only_with_overwrite(site, tmp_path):
    data = tmp_path / "qa.csv"
    data.write_text("prompt,response\nWhat is 2+2?,4\n", encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    target = out / "qa.jsonl"
    target.write_text('{"input": "earlier", "output": "work"}\n', encoding="utf-8")

    refused = sft(site, "csv-to-jsonl", str(data), str(target))
    assert refused.returncode == 1
    assert refused.stderr == f"Error: {target} already exists; pass --overwrite to replace it\n"
    assert target.read_text() == '{"input": "earlier", "output": "work"}\n'

    # a bad row found with --overwrite: the old file stays as it was, nothing partial beside it
    data.write_text("prompt,response\nWhat is 2+2?,4\nno answer,\n", encoding="utf-8")
    failed = sft(site, "csv-to-jsonl", "--overwrite", str(data), str(target))
    assert failed.returncode == 1 and f"{data}:3: empty response" in failed.stderr
    assert target.read_text() == '{"input": "earlier", "output": "work"}\n'
    assert os.listdir(out) == ["qa.jsonl"]

    data.write_text("prompt,response\nWhat is 2+2?,4\n", encoding="utf-8")
    replaced = sft(site, "csv-to-jsonl", "--overwrite", str(data), str(target))
    assert replaced.returncode == 0, replaced.stderr
    assert target.read_text() == '{"input": "What is 2+2?", "output": "4"}\n'
    assert os.listdir(out) == ["qa.jsonl"]


def test_the_readme_s_try_it_commands_run_as_written():
    readme = (EXAMPLE / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Trying it in the workspace", 1)[1]
    script = section.split("```bash\n", 1)[1].split("```", 1)[0]
    env = {k: v for k, v in os.environ.items() if k != "SFT_DISABLE_PLUGINS"}
    env["COLUMNS"] = "200"
    run = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, cwd=REPO,
                         env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "example_format" in run.stdout and "0.1.0" in run.stdout
