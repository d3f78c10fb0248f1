"""sft_cli.outputs: the one place commands decide whether and how an output is replaced."""

from __future__ import annotations

import json
import os

import pytest
from sft_cli.outputs import OutputExistsError, check_free, replacing
from sft_core import SftError


def listing(directory) -> list[str]:
    return sorted(os.listdir(directory))


def test_absent_and_empty_directories_are_free_anything_else_needs_overwrite(tmp_path):
    check_free(tmp_path / "absent", overwrite=False)
    (tmp_path / "empty").mkdir()
    check_free(tmp_path / "empty", overwrite=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputExistsError, match=r"file already exists; pass --overwrite to replace it$"):
        check_free(tmp_path / "file", overwrite=False)
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")  # a dangling link is still something there
    with pytest.raises(OutputExistsError):
        check_free(tmp_path / "link", overwrite=False)
    check_free(tmp_path / "file", overwrite=True)


def test_overwrite_never_deletes_a_directory_of_another_kind(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    with pytest.raises(SftError, match="home exists and is not a prepared dataset; refusing to replace it"), \
            replacing(home, True, replaceable=lambda p: (p / "header.json").is_file(), what="a prepared dataset"):
        raise AssertionError("the block must not run")
    assert (home / "thesis.tex").read_text() == "years of work"


def test_a_file_is_written_beside_and_swapped_in_when_complete(tmp_path):
    out = tmp_path / "report.png"
    out.write_bytes(b"old")
    with replacing(out, True) as tmp:
        assert tmp.parent == tmp_path and tmp.name == f".report.partial-{os.getpid()}.png"  # suffix kept
        tmp.write_bytes(b"new")
        assert out.read_bytes() == b"old"  # not yet
    assert out.read_bytes() == b"new" and listing(tmp_path) == ["report.png"]


def test_a_directory_is_swapped_and_the_old_one_removed(tmp_path):
    out = tmp_path / "prepared"
    out.mkdir()
    (out / "old.npy").write_bytes(b"old")
    with replacing(out, True) as tmp:
        tmp.mkdir()
        (tmp / "new.npy").write_bytes(b"new")
    assert listing(out) == ["new.npy"] and listing(tmp_path) == ["prepared"]


@pytest.mark.parametrize("make_dir", [False, True])
def test_a_failure_keeps_the_old_output_and_removes_the_partial_one(tmp_path, make_dir):
    out = tmp_path / "out"

    def write(path, text):
        if make_dir:
            path.mkdir()
            path = path / "a"
        path.write_text(text)

    write(out, "old")
    with pytest.raises(KeyboardInterrupt), replacing(out, True) as tmp:
        write(tmp, "half")
        raise KeyboardInterrupt  # Ctrl-C midway
    assert (out / "a" if make_dir else out).read_text() == "old"
    assert listing(tmp_path) == ["out"]


def test_a_failed_rename_into_place_puts_the_old_directory_back(tmp_path, monkeypatch):
    out = tmp_path / "hf"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"old": True}))
    real = os.replace
    calls = []

    def replace(src, dst):
        calls.append((os.path.basename(src), os.path.basename(dst)))
        if len(calls) == 2:  # old moved aside; the new one cannot take its place
            raise OSError("injected")
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="injected"), replacing(out, True) as tmp:
        tmp.mkdir()
        (tmp / "config.json").write_text("{}")
    pid = os.getpid()
    # the old directory was moved aside under a name that says what it is, then put back
    assert calls[:2] == [("hf", f".hf.old-{pid}"), (f".hf.partial-{pid}", "hf")]
    assert json.loads((out / "config.json").read_text()) == {"old": True}
    assert listing(tmp_path) == ["hf"]


def test_a_block_that_writes_nothing_is_an_error_not_a_deletion(tmp_path):
    out = tmp_path / "x.jsonl"
    out.write_text("old")
    with pytest.raises(SftError, match="nothing was written"), replacing(out, True):
        pass
    assert out.read_text() == "old"


def test_a_stale_partial_from_a_killed_run_does_not_get_in_the_way(tmp_path):
    out = tmp_path / "m.nemo"
    stale = tmp_path / f".m.partial-{os.getpid()}.nemo"
    stale.write_text("stale")
    with replacing(out, False) as tmp:
        assert not tmp.exists()
        tmp.write_text("new")
    assert listing(tmp_path) == ["m.nemo"] and out.read_text() == "new"
