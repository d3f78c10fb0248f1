"""sft-data installs and prepares data on its own: no torch, no megatron-core, no sft package but
sft-core (the plugin machinery, pluggy only).

Nothing comes from an index, a cache or the network: the sft-core and sft-data wheels are built with the workspace's
own hatchling, and its locked runtime dependencies are the very distributions `uv sync` installed in
the workspace environment, exposed to a fresh venv through a directory of symlinks (only their
RECORD files) and a `.pth` file. So the fresh venv sees exactly sft-data's declared dependencies.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import importlib.metadata, importlib.util, json, re, sys
    import sft_data
    from sft_data.tokenizers.training import train_sentencepiece

    assert importlib.util.find_spec("torch") is None, "torch must not be installed"
    assert importlib.util.find_spec("megatron") is None, "megatron-core must not be installed"
    assert importlib.util.find_spec("sft_model") is None and importlib.util.find_spec("sft_trainer") is None
    from sft_core.manager import installed_hosts
    assert [host.__name__ for host in installed_hosts()] == ["sft_data.hookspecs"]
    # every runtime requirement sft-data declares is present (the extra `torch` excepted)
    for req in importlib.metadata.requires("sft-data"):
        if "extra ==" not in req:
            importlib.metadata.version(re.match(r"[A-Za-z0-9._-]+", req).group())
    corpus, data, out = sys.argv[1:4]
    tok = sft_data.load_tokenizer(train_sentencepiece([corpus], out + "/tok.model", 600))
    result = sft_data.prepare([data], tok, sft_data.DataConfig(pack_size=1024, max_seq_length=1024), out + "/prep")
    print(json.dumps(result.stats["packing"]))
""")


def locked_runtime_dependencies(uv: str) -> list[Requirement]:
    """sft-data's locked dependency closure for this platform, from uv.lock alone (no torch: that is an extra)."""
    export = subprocess.run(
        [uv, "export", "--frozen", "--package", "sft-data", "--no-hashes", "--no-emit-workspace", "--no-dev",
         "--no-header", "--no-annotate", "--quiet"], cwd=REPO, capture_output=True, text=True,
    )
    assert export.returncode == 0, export.stderr
    reqs = [Requirement(line) for line in export.stdout.splitlines() if line.strip() and not line.startswith("#")]
    names = {r.name for r in reqs}
    assert names and "torch" not in names and not any(n.startswith("megatron") for n in names)
    return [r for r in reqs if r.marker is None or r.marker.evaluate()]


def link_distributions(reqs: list[Requirement], into: Path) -> None:
    """Mirror each installed distribution's RECORD files (modules + dist-info) as symlinks under `into`."""
    for req in reqs:
        dist = importlib.metadata.distribution(req.name)
        assert req.specifier.contains(dist.version), f"{req.name}: locked {req.specifier}, installed {dist.version}"
        for file in dist.files or ():
            if file.parts[0] == ".." or "__pycache__" in file.parts:
                continue  # scripts outside site-packages; bytecode is rebuilt as needed
            source, target = Path(file.locate()), into / file
            if source.is_file() and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(source)


def test_sft_data_installs_alone_and_prepares(tmp_path):
    uv = shutil.which("uv")
    assert uv, "uv is needed (the README's set-up installs it)"
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    python = venv / "bin" / "python"

    deps = tmp_path / "deps"
    link_distributions(locked_runtime_dependencies(uv), deps)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "sft_data_deps.pth").write_text(f"{deps}\n", encoding="utf-8")

    wheels = tmp_path / "wheels"
    for package in ("sft-core", "sft-data"):  # sft-core is a workspace member: built, not linked
        build = subprocess.run(
            [uv, "build", "--quiet", "--wheel", "--no-build-isolation", "--python", sys.executable,
             "--out-dir", str(wheels), str(REPO / "packages" / package)], capture_output=True, text=True,
        )
        assert build.returncode == 0, build.stderr
    install = subprocess.run(
        [uv, "pip", "install", "--quiet", "--no-index", "--no-deps", "--python", str(python),
         *map(str, wheels.glob("sft_*.whl"))], capture_output=True, text=True,
    )
    assert install.returncode == 0, install.stderr
    run = subprocess.run(
        [str(python), "-c", SCRIPT, str(REPO / "examples/data/corpus.txt"), str(REPO / "examples/data/train.jsonl"),
         str(tmp_path)], capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stderr
    assert '"bins"' in run.stdout
    assert (tmp_path / "prep" / "stats.json").is_file()
