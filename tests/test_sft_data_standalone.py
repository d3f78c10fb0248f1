"""sft-data installs and prepares data on its own: no torch, no megatron-core, no other sft package."""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import importlib.util, json, sys
    import sft_data
    from sft_data.tokenizers.training import train_sentencepiece

    assert importlib.util.find_spec("torch") is None, "torch must not be installed"
    assert importlib.util.find_spec("megatron") is None, "megatron-core must not be installed"
    assert importlib.util.find_spec("sft_model") is None
    corpus, data, out = sys.argv[1:4]
    tok = sft_data.load_tokenizer(train_sentencepiece([corpus], out + "/tok.model", 600))
    result = sft_data.prepare([data], tok, sft_data.DataConfig(pack_size=1024, max_seq_length=1024), out + "/prep")
    print(json.dumps(result.stats["packing"]))
""")


def test_sft_data_installs_alone_and_prepares(tmp_path):
    uv = shutil.which("uv")
    assert uv, "uv is needed (the README's set-up installs it)"
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "--quiet", "--python", "3.12", str(venv)], check=True)
    python = venv / "bin" / "python"
    # sft-data's own locked dependencies (no torch: that is the `torch` extra), installed offline
    # from uv's cache as `uv sync` left it; a network install would resolve the same set.
    requirements = tmp_path / "requirements.txt"
    export = subprocess.run(
        [uv, "export", "--frozen", "--package", "sft-data", "--no-hashes", "--no-emit-workspace", "--no-dev",
         "--no-header", "--quiet", "--output-file", str(requirements)], cwd=REPO, capture_output=True, text=True,
    )
    assert export.returncode == 0, export.stderr
    assert "torch" not in requirements.read_text() and "megatron" not in requirements.read_text()
    install = subprocess.run(
        [uv, "pip", "install", "--quiet", "--offline", "--no-deps", "--python", str(python),
         "-r", str(requirements), str(REPO / "packages" / "sft-data")],
        capture_output=True, text=True,
    )
    assert install.returncode == 0, install.stderr
    run = subprocess.run(
        [str(python), "-c", SCRIPT, str(REPO / "examples/data/corpus.txt"), str(REPO / "examples/data/train.jsonl"),
         str(tmp_path)], capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stderr
    assert '"bins"' in run.stdout
    assert (tmp_path / "prep" / "stats.json").is_file()
