"""``sft generate`` and ``sft convert nemo-to-hf`` on hostile ``.nemo`` files: one line, exit 1,
no pickle run, nothing written outside (the archives are built by the root ``hostile_nemo`` fixture)."""

from __future__ import annotations

import pytest

HEX = "cd" * 16


def _commands(evil, out):
    return [("generate", evil, "--prompt", "hi"), ("convert", "nemo-to-hf", evil, out)]


def _assert_refused(result, *needles: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.output and all(n in result.stderr for n in needles), result.stderr


@pytest.mark.parametrize("entry", ["common_state", "model.decoder.layers.self_attention.linear_qkv._extra_state"])
def test_a_pickle_payload_never_runs(run, hostile_nemo, tmp_path, entry):
    evil = hostile_nemo.pickle_payload(entry)
    for args in _commands(evil, tmp_path / "hf"):
        _assert_refused(run(*args), str(evil), f"refusing checkpoint entry {entry}/", "_io.open")
    assert not hostile_nemo.marker.exists()
    assert not (tmp_path / "hf").exists()


@pytest.mark.parametrize("attack", ["write-absolute", "walk-out", "read-absolute"])
def test_tokenizer_references_cannot_leave_the_archive(run, hostile_nemo, tmp_path, attack):
    victim = hostile_nemo.victim
    if attack == "write-absolute":  # "<hex>_/abs/path" with a member of that name wrote /abs/path
        evil = hostile_nemo.tokenizer_ref(f"nemo:{HEX}_{victim}", member=f"{HEX}_{victim}")
    elif attack == "walk-out":  # "<hex>_../../x" walked out of the tokenizer directory
        evil = hostile_nemo.tokenizer_ref(f"nemo:{HEX}_../../escaped.model")
    else:  # "nemo:/abs/path" copied a file from outside the archive into the output
        victim.write_bytes(b"a file outside the archive")
        evil = hostile_nemo.tokenizer_ref(f"nemo:{victim}")
    for args in _commands(evil, tmp_path / "hf"):
        _assert_refused(run(*args), str(evil), "refusing artifact reference")
    assert not list(tmp_path.rglob("escaped.model")) and not (tmp_path / "hf").exists()
    assert victim.exists() == (attack == "read-absolute")
