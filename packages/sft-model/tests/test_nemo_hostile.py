"""Hostile ``.nemo`` files, built from a real one: no pickle runs, nothing is written outside the
target, and extraction is bounded. (The trainer's ``model.restore_from_path`` goes through
``load_nemo``; the CLI commands are in sft-cli's test_hostile_nemo_cli.py.)"""

from __future__ import annotations

import io
import pickle
import re
import tarfile

import pytest
import torch
from sft_model.errors import NemoArchiveError

HEX = "ab" * 16
EXTRA = "model.decoder.layers.mlp.linear_fc1._extra_state"


@pytest.fixture(scope="module")
def model(megatron, tiny_nemo):
    import sft_model

    return sft_model.load_nemo(tiny_nemo).model


def _refused(call, match: str) -> str:
    with pytest.raises(NemoArchiveError, match=match) as err:
        call()
    assert "\n" not in str(err.value)
    return str(err.value)


@pytest.mark.parametrize("directory", [False, True], ids=["file", "directory"])
@pytest.mark.parametrize("entry", ["common_state", EXTRA])
def test_a_pickle_behind_a_byte_entry_never_runs(hostile_nemo, model, tmp_path, entry, directory):
    import sft_model
    from sft_model.nemo.inspect import describe

    evil = hostile_nemo.pickle_payload(entry, directory=directory)
    expected = rf"refusing checkpoint entry {re.escape(entry)}/shard_\S+ \(Unsupported global: GLOBAL _io\.open"
    assert str(evil) in _refused(lambda: sft_model.load_nemo(evil), expected)
    _refused(lambda: sft_model.load_weights(model, evil), expected)
    # reading only the tokenizer or the description unpickles no weights at all
    assert sft_model.extract_tokenizer(evil, tmp_path / "tok").path.name == "tok.model"
    assert describe(evil)["parameters"] > 0
    assert not hostile_nemo.marker.exists()


def test_te_style_extra_state_loads_and_is_never_handed_to_modules(hostile_nemo, monkeypatch):
    """Transformer Engine stores extra state as a BytesIO of a torch.save'd dict, or as a byte
    tensor its ``set_extra_state`` unpickles without restriction. Both pass the restricted loader
    (they are data); neither reaches a module, so a pickle inside the tensor never runs."""
    import sft_model
    from megatron.core.tensor_parallel import layers

    def te_set_extra_state(self, state):  # what TE does with what it is given
        if isinstance(state, torch.Tensor) and state.numel():
            pickle.loads(state.numpy().tobytes())
        elif isinstance(state, io.BytesIO):
            state.seek(0)
            torch.load(state, weights_only=False)

    for cls in (layers.ColumnParallelLinear, layers.RowParallelLinear):
        monkeypatch.setattr(cls, "set_extra_state", te_set_extra_state)
    inner = io.BytesIO()
    torch.save([hostile_nemo.payload], inner)
    as_tensor = torch.frombuffer(bytearray(pickle.dumps(hostile_nemo.payload)), dtype=torch.uint8)
    for value in (inner, as_tensor, {"scale_fwd": torch.ones(3), "recipe": "delayed"}):
        legit = hostile_nemo.byte_entry(EXTRA, [value])  # megatron stores [extra state] per shard
        assert sft_model.load_nemo(legit).config.num_layers == 2
        assert not hostile_nemo.marker.exists(), type(value)


@pytest.mark.parametrize("directory", [False, True], ids=["file", "directory"])
@pytest.mark.parametrize("field", ["model", "vocab_file", "merge_file", "extra_files"])
def test_an_absolute_artifact_name_writes_nothing_outside(hostile_nemo, tmp_path, field, directory):
    import sft_model

    member = f"{HEX}_{hostile_nemo.victim}"  # "<hex>_/abs/path": a relative member, an absolute original name
    evil = hostile_nemo.tokenizer_ref(f"nemo:{member}", field=field, member=member, directory=directory)
    for call in (lambda: sft_model.load_nemo(evil), lambda: sft_model.extract_tokenizer(evil, tmp_path / "tok")):
        assert str(evil) in _refused(call, "refusing artifact reference")
    assert not hostile_nemo.victim.exists()


@pytest.mark.parametrize("directory", [False, True], ids=["file", "directory"])
@pytest.mark.parametrize("name", [f"{HEX}_../../escaped.model", "../escaped.model", f"{HEX}_..", "..",
                                  "sub\\..\\escaped.model", "SECRET"])
def test_artifact_references_stay_inside_the_archive(hostile_nemo, tmp_path, name, directory):
    import sft_model

    secret = hostile_nemo.victim.with_name("secret.model")  # a real tokenizer outside the archive
    secret.write_bytes(next(hostile_nemo.unpacked().glob("*_tok.model")).read_bytes())
    ref = f"nemo:{secret}" if name == "SECRET" else f"nemo:{name}"
    evil = hostile_nemo.tokenizer_ref(ref, directory=directory)
    target = tmp_path / "a" / "b" / "tok"
    for call in (lambda: sft_model.load_nemo(evil), lambda: sft_model.extract_tokenizer(evil, target)):
        _refused(call, "refusing artifact reference")
    assert not list(tmp_path.rglob("escaped.model")) and list(tmp_path.rglob("*secret.model")) == [secret]
    assert not target.exists() or not any(target.iterdir())


def test_links_in_an_extracted_directory_are_refused(hostile_nemo, tmp_path):
    import sft_model

    src = hostile_nemo.unpacked()
    secret = hostile_nemo.victim.with_name("secret.model")
    artifact = next(src.glob("*_tok.model"))
    secret.write_bytes(artifact.read_bytes())
    artifact.unlink()
    artifact.symlink_to(secret)
    _refused(lambda: sft_model.extract_tokenizer(src, tmp_path / "tok"), "not a file in the directory")
    artifact.unlink()
    artifact.write_bytes(secret.read_bytes())
    distcp = src / "model_weights" / "__0_0.distcp"
    distcp.rename(hostile_nemo.victim)
    distcp.symlink_to(hostile_nemo.victim)
    _refused(lambda: sft_model.load_nemo(src), r"model_weights/__0_0\.distcp is missing, a link")


def test_checkpoint_files_outside_the_weights_directory_are_refused(hostile_nemo):
    import sft_model
    from sft_model.nemo.untrusted import read_metadata

    for directory in (False, True):
        src = hostile_nemo.unpacked()
        weights = src / "model_weights"
        meta = read_metadata((weights / ".metadata").read_bytes(), src)
        for info in meta.storage_data.values():
            info.relative_path = "../../outside/victim.txt"
        (weights / ".metadata").write_bytes(pickle.dumps(meta))
        evil = src if directory else hostile_nemo.pack(src)
        _refused(lambda evil=evil: sft_model.load_nemo(evil), "is not a file name inside the checkpoint")


class _Zeros(io.RawIOBase):
    """``size`` zero bytes, produced as they are read (a bomb costs no memory or disk to build)."""

    def __init__(self, size: int):
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


def _rebuild(source, out, mode: str = "w:gz", replace=None, extra=(), huge: str | None = None):
    """Copy ``source``'s members into a new tar, ``replace[name] -> (size, stream)`` swapped in,
    ``extra`` members added, and last a header for ``huge`` declaring 1 TiB with no data after it."""
    with tarfile.open(source) as src, tarfile.open(out, mode) as dst:
        for member in src.getmembers():
            name = member.name.removeprefix("./")
            if huge is not None and name == huge:
                continue
            if replace and name in replace:
                member.size, stream = replace[name](src.extractfile(member).read())
                dst.addfile(member, stream)
            else:
                dst.addfile(member, src.extractfile(member) if member.isfile() else None)
        for info in extra:
            dst.addfile(info, io.BytesIO(b""))
        if huge is not None:
            info = tarfile.TarInfo(f"./{huge}")
            info.size = 1 << 40
            header = info.tobuf(dst.format, dst.encoding, dst.errors)
            dst.fileobj.write(header)
            dst.offset += len(header)
    return out


def _artifact(nemo) -> str:
    with tarfile.open(nemo) as tar:
        return next(n.removeprefix("./") for n in tar.getnames() if n.endswith("_tok.model"))


def test_a_gzip_bomb_member_is_refused_before_anything_is_written(tiny_nemo, tmp_path):
    import sft_model
    from sft_model.nemo.unpack import Limits

    bomb = 64 << 20
    name = _artifact(tiny_nemo)
    evil = _rebuild(tiny_nemo, tmp_path / "bomb.nemo", replace={name: lambda data: (bomb, _Zeros(bomb))})
    assert evil.stat().st_size < 2 << 20  # small on disk, 64 MiB inflated
    small = Limits(artifact_bytes=1 << 20)
    message = rf"refusing member '{name}': it declares {bomb} bytes, more than the {1 << 20} allowed"
    _refused(lambda: sft_model.extract_tokenizer(evil, tmp_path / "tok", limits=small), message)
    _refused(lambda: sft_model.load_nemo(evil, limits=small), message)
    assert not list((tmp_path / "tok").iterdir())
    # a .distcp may hold only what its metadata declares: padding it with 64 MiB fails with the default limits
    padded = _rebuild(tiny_nemo, tmp_path / "padded.nemo", replace={
        "model_weights/__0_0.distcp": lambda data: (len(data) + bomb, io.BufferedReader(_Chain(data, bomb)))})
    from sft_model.nemo.unpack import unpack

    size = _size(tiny_nemo, "model_weights/__0_0.distcp")
    _refused(lambda: unpack(padded, tmp_path / "root", None), r"refusing member 'model_weights/__0_0\.distcp': "
             rf"it declares {size + bomb} bytes, more than the {size} allowed")
    assert not list((tmp_path / "root").rglob("*"))


class _Chain(io.RawIOBase):
    def __init__(self, head: bytes, zeros: int):
        self.head, self.zeros = io.BytesIO(head), _Zeros(zeros)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        return self.head.readinto(buffer) or self.zeros.readinto(buffer)


def _size(nemo, name: str) -> int:
    with tarfile.open(nemo) as tar:
        return tar.getmember(f"./{name}").size


@pytest.mark.parametrize("mode", ["w:", "w:gz"])
def test_a_header_declaring_a_terabyte_is_refused(tiny_nemo, tmp_path, mode):
    import sft_model

    evil = _rebuild(tiny_nemo, tmp_path / "huge.nemo", mode, huge=_artifact(tiny_nemo))
    target = tmp_path / "tok"
    for call in (lambda: sft_model.load_nemo(evil), lambda: sft_model.extract_tokenizer(evil, target)):
        _refused(call, f"declares {1 << 40} bytes")
    assert not target.exists()


def test_too_many_members_are_refused_while_the_index_is_read(tiny_nemo, tmp_path):
    import sft_model
    from sft_model.nemo.archive import MAX_MEMBERS

    junk = [tarfile.TarInfo(f"junk/{i}") for i in range(MAX_MEMBERS)]
    evil = _rebuild(tiny_nemo, tmp_path / "many.nemo", extra=junk)
    assert evil.stat().st_size < 2 << 20
    for call in (lambda: sft_model.load_nemo(evil), lambda: sft_model.read_config(evil)):
        _refused(call, f"refusing archive with more than {MAX_MEMBERS} members")


def test_only_what_the_model_needs_is_extracted(tiny_nemo, tmp_path, monkeypatch):
    import sft_model
    from sft_model.nemo import archive
    from sft_model.nemo.unpack import unpack

    extra = [tarfile.TarInfo(n) for n in ("junk.bin", "model_weights/stray.bin", f"{HEX}_unreferenced.model")]
    busy = _rebuild(tiny_nemo, tmp_path / "busy.nemo", "w:", extra=extra)
    unpack(busy, tmp_path / "root", tmp_path / "tok")
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.glob("*/**/*") if p.is_file()) == [
        "root/model_weights/.metadata", "root/model_weights/__0_0.distcp", "root/model_weights/metadata.json",
        "tok/tok.model"]
    assert sft_model.load_nemo(busy).tokenizer.path.name == "tok.model"
    monkeypatch.setattr(archive.shutil, "disk_usage", lambda path: type("Usage", (), {"free": 1000})())
    _refused(lambda: sft_model.load_nemo(busy), r"refusing to extract \d+ bytes into .*only 1000 bytes are free")



def test_the_readme_states_the_limits_the_code_applies():
    from pathlib import Path

    from sft_model.nemo.unpack import LIMITS

    text = " ".join((Path(__file__).resolve().parents[3] / "README.md").read_text().split())
    assert "treats it as untrusted: every pickled byte" in text
    assert f"tokenizer files {LIMITS.artifact_bytes >> 30} GiB; at most {LIMITS.members:,} members" in text
