"""No command replaces an existing output unless asked (--overwrite), and a failed overwrite keeps it.

For every command that writes a file or a directory: a second run without ``--overwrite`` fails in
one line before any expensive work (the loaders are replaced by tripwires) and leaves the old output
byte-identical; with ``--overwrite`` the output is replaced; a failure injected after the new output
started being written leaves the old one intact and nothing partial beside it.
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from .conftest import REPO

OLD_FILE = b"old output that must survive\n"
OLD_DATASET = {"header.json": b'{"format": "sft-prepared"}\n', "tokens.npy": b"old tokens"}
OLD_HF = {"config.json": b'{"model_type": "llama"}\n', "model.safetensors": b"old weights"}


class Injected(OSError):
    pass


def after_real(real: Callable) -> Callable:
    """Run the real writer step (so a partial output exists), then fail like a full disk would."""
    def fail(*args, **kwargs):
        real(*args, **kwargs)
        raise Injected("No space left on device (injected)")
    return fail


def after_first_answer(real: Callable) -> Callable:
    def fail(*args, **kwargs):
        answers = real(*args, **kwargs)
        yield next(iter(answers))
        raise Injected("No space left on device (injected)")
    return fail


@dataclass
class Case:
    args: Callable[[dict, Path], list]  # (inputs, output) -> command line
    is_dir: bool
    expensive: tuple[str, ...]  # dotted names that must not be called when the output exists
    fail_at: str  # dotted name of a writer step wrapped by `inject`
    check: Callable[[Path], None]  # the new output is real
    inject: Callable = after_real


def _is_nemo(path: Path) -> None:
    with tarfile.open(path) as tar:
        assert "./model_config.yaml" in tar.getnames()


def _is_dataset(path: Path) -> None:
    from sft_data.store import PreparedDataset

    assert len(PreparedDataset(path).seq_offsets) > 1 and not (path / "tokens.npy").read_bytes().startswith(b"old")


def _is_hf(path: Path) -> None:
    assert json.loads((path / "config.json").read_text())["num_hidden_layers"] == 2
    assert (path / "model.safetensors").read_bytes()[:8] != b"old weig"


def _is_png(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _answers(path: Path) -> None:
    assert [json.loads(line)["input"] for line in path.read_text().splitlines()] == ["Hi?", "Bye?"]


def _tokenizer(path: Path) -> None:
    from sft_data.tokenizers.sentencepiece import SentencePieceTokenizer

    assert SentencePieceTokenizer(path).vocab_size == 400


CASES = {
    "init": Case(
        lambda i, out: ["init", "--family", "llama", "--tokenizer", i["tok"], "--output", out, "--num-layers", "1",
                        "--hidden-size", "32", "--num-attention-heads", "2", "--seq-length", "32"],
        False, ("sft_cli.commands.init_model.load_tokenizer", "sft_model.random_init.init_nemo"),
        "sft_model.nemo.archive.write", _is_nemo),
    "hf-to-nemo": Case(
        lambda i, out: ["convert", "hf-to-nemo", i["hf"], out],
        False, ("sft_model.hf.convert.hf_to_nemo",), "sft_model.nemo.archive.write", _is_nemo),
    "nemo-to-hf": Case(
        lambda i, out: ["convert", "nemo-to-hf", i["nemo"], out],
        True, ("sft_trainer.adapters.load_for_use", "sft_model.hf.convert.loaded_to_hf"),
        "sft_model.hf.convert.CheckpointWriter.close", _is_hf),
    "prepare": Case(
        lambda i, out: ["prepare", REPO / "examples/data/train.jsonl", "--tokenizer", i["tok"], "--output", out],
        True, ("sft_cli.commands.prepare.load_tokenizer", "sft_cli.commands.prepare.prepare"),
        "sft_data.store.write_prepared_arrays", _is_dataset),
    "import-packed": Case(
        lambda i, out: ["import-packed", i["packed"], "--allow-pickle", "--output", out],
        True, ("sft_cli.commands.import_packed.import_nemo_packed",), "sft_data.packing.nemo_npy.write_prepared",
        _is_dataset),
    "tokenizer-train": Case(
        lambda i, out: ["tokenizer", "train", REPO / "examples/data/corpus.txt", "--vocab-size", "400",
                        "--output", out],
        False, ("sft_cli.commands.tokenizer.train_sentencepiece",),
        "sft_cli.commands.tokenizer.SentencePieceTokenizer", _tokenizer),
    "generate": Case(
        lambda i, out: ["generate", i["nemo"], "--input", i["questions"], "--output", out, "--max-new-tokens", "2"],
        False, ("sft_trainer.generation.runner.Generator",), "sft_trainer.generation.runner.Generator.run",
        _answers, inject=after_first_answer),
    "report": Case(
        lambda i, out: ["report", i["run"], "--output", out],
        False, ("sft_trainer.report.write_report",), "sft_trainer.report.render", _is_png),
}
OUTPUT_NAME = {"init": "m.nemo", "hf-to-nemo": "m.nemo", "tokenizer-train": "t.model", "generate": "a.jsonl",
               "report": "r.png", "nemo-to-hf": "hf", "prepare": "prepared", "import-packed": "prepared"}


@pytest.fixture(scope="module")
def inputs(tiny, tok_model, tmp_path_factory) -> dict:
    from sft_model.hf.convert import nemo_to_hf

    where = tmp_path_factory.mktemp("inputs")
    packed = np.empty(1, dtype=object)
    packed[0] = {"input_ids": [1, 2, 3, 4, 5], "loss_mask": [0, 1, 1, 1, 0], "seq_start_id": [0, 2]}
    np.save(where / "packed_16_seed1.npy", packed, allow_pickle=True)
    (where / "q.jsonl").write_text('{"input": "Hi?", "output": "x"}\n{"input": "Bye?", "output": "y"}\n')
    (where / "run").mkdir()
    (where / "run" / "metrics.jsonl").write_text("".join(
        json.dumps({"step": s, "train/loss": 1.0 / s, "train/lr": 1e-3, "train/tokens_per_sec": 10.0}) + "\n"
        for s in (1, 2)))
    return {"tok": tok_model, "nemo": tiny, "hf": nemo_to_hf(tiny, where / "hf"),
            "packed": where / "packed_16_seed1.npy", "questions": where / "q.jsonl", "run": where / "run"}


def make_old(case: Case, out: Path) -> None:
    out.parent.mkdir()
    if not case.is_dir:
        out.write_bytes(OLD_FILE)
        return
    out.mkdir()
    for name, data in (OLD_HF if "hf" in out.name else OLD_DATASET).items():
        (out / name).write_bytes(data)


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` (the output's parent: leftovers beside it count too)."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def tripwire(name: str) -> Callable:
    def called(*args, **kwargs):
        raise AssertionError(f"{name} was called although the output exists")
    return called


@pytest.fixture(params=sorted(CASES))
def case(request, tmp_path) -> tuple[str, Case, Path]:
    name = request.param
    out = tmp_path / "out" / OUTPUT_NAME[name]
    make_old(CASES[name], out)
    return name, CASES[name], out


def test_an_existing_output_survives_a_run_without_overwrite(case, inputs, run, monkeypatch):
    _, spec, out = case
    before = snapshot(out.parent)
    for name in spec.expensive:
        monkeypatch.setattr(name, tripwire(name))
    result = run(*spec.args(inputs, out))
    assert result.exit_code == 1
    assert result.stderr == f"Error: {out} already exists; pass --overwrite to replace it\n"
    assert snapshot(out.parent) == before


def test_overwrite_replaces_the_output(case, inputs, run):
    _, spec, out = case
    result = run(*spec.args(inputs, out), "--overwrite")
    assert result.exit_code == 0, result.output
    spec.check(out)
    assert os.listdir(out.parent) == [out.name]  # nothing partial or old left beside it


def test_a_failed_overwrite_keeps_the_old_output(case, inputs, run, monkeypatch):
    _, spec, out = case
    before = snapshot(out.parent)
    module, _, attr = spec.fail_at.rpartition(".")
    owner = _resolve(module)
    monkeypatch.setattr(owner, attr, spec.inject(getattr(owner, attr)))
    result = run(*spec.args(inputs, out), "--overwrite")
    assert result.exit_code == 1
    # one error line (a progress bar may precede it)
    assert [line for line in result.stderr.splitlines() if "(injected)" in line] == [result.stderr.splitlines()[-1]]
    assert result.stderr.count("Error:") == 1
    assert snapshot(out.parent) == before
    assert os.listdir(out.parent) == [out.name]


def _resolve(dotted: str):
    import importlib

    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for part in parts[i:]:
            obj = getattr(obj, part)
        return obj
    raise ImportError(dotted)


@pytest.mark.parametrize("name", ["prepare", "import-packed", "nemo-to-hf"])
def test_overwrite_refuses_to_replace_a_directory_of_another_kind(name, inputs, run, tmp_path, monkeypatch):
    spec = CASES[name]
    out = tmp_path / "home"
    out.mkdir()
    (out / "notes.txt").write_text("not an output of sft")
    for dotted in spec.expensive:
        monkeypatch.setattr(dotted, tripwire(dotted))
    result = run(*spec.args(inputs, out), "--overwrite")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {out} exists and is not a") and "refusing to replace it" in result.stderr
    assert os.listdir(out) == ["notes.txt"] and os.listdir(tmp_path) == ["home"]


def test_an_empty_directory_is_not_an_output_to_protect(inputs, run, tmp_path):
    out = tmp_path / "prepared"
    out.mkdir()
    result = run(*CASES["prepare"].args(inputs, out))
    assert result.exit_code == 0, result.output
    _is_dataset(out)


def test_report_redraws_the_runs_own_png_without_overwrite(inputs, run, tmp_path):
    import shutil

    run_dir = Path(shutil.copytree(inputs["run"], tmp_path / "run"))
    (run_dir / "report.png").write_bytes(b"drawn by training")
    result = run("report", run_dir)
    assert result.exit_code == 0, result.output
    _is_png(run_dir / "report.png")
    assert sorted(os.listdir(run_dir)) == ["metrics.jsonl", "report.png"]


@pytest.mark.parametrize("command", [
    ["init"], ["prepare"], ["import-packed"], ["tokenizer", "train"], ["generate"], ["report"],
    ["convert", "hf-to-nemo"], ["convert", "nemo-to-hf"], ["merge-lora"],
])
def test_help_documents_overwrite(run, command):
    result = run(*command, "--help")
    assert result.exit_code == 0
    text = " ".join(result.output.split())  # help is wrapped at the terminal width
    assert "--overwrite Replace" in text and "swapped in only when complete" in text
