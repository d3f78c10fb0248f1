"""``.nemo`` I/O: layout, extracted dirs and gzip, hostile archives refused, truncation one line."""

from __future__ import annotations

import io
import os
import pickle
import tarfile

import pytest
import torch
from sft_model.errors import NemoArchiveError


@pytest.fixture(scope="module")
def nemo_file(megatron, tmp_path_factory, sp_tokenizer):
    import sft_model

    out = tmp_path_factory.mktemp("nemo") / "tiny.nemo"
    return sft_model.init_nemo("llama", sp_tokenizer, 90, out, num_layers=2, hidden_size=64)


def test_layout_matches_the_reference(nemo_file, sp_tokenizer):
    with tarfile.open(nemo_file, "r:") as tar:  # plain, uncompressed tar
        names = tar.getnames()
    assert "./model_config.yaml" in names
    assert {"./model_weights/metadata.json", "./model_weights/.metadata"} <= set(names)
    artifacts = [n for n in names if n.endswith("_tokenizer.model")]
    assert len(artifacts) == 1 and len(os.path.basename(artifacts[0]).split("_")[0]) == 32
    from sft_model.nemo.archive import extract
    from sft_model.nemo.checkpoint import global_shapes

    extract(nemo_file, nemo_file.parent / "x")
    shapes = global_shapes(nemo_file.parent / "x" / "model_weights")
    assert shapes["embedding.word_embeddings.weight"] == (128, 64)  # 90 rounded up to 128
    # megatron-core stacks the layers of a stage into one tensor per name, with the norms fused names
    assert shapes["decoder.layers.self_attention.linear_qkv.layer_norm_weight"] == (2, 64)


def test_extracted_dir_and_gzip_load_the_same(nemo_file, tmp_path):
    import sft_model

    ids = torch.randint(0, 90, (1, 12))
    expected = sft_model.compute_logits(sft_model.load_nemo(nemo_file), ids)
    with tarfile.open(nemo_file) as src, tarfile.open(tmp_path / "z.nemo", "w:gz") as dst:
        for member in src.getmembers():
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
    with tarfile.open(nemo_file) as src:
        src.extractall(tmp_path / "dir", filter="data")
    for source in (tmp_path / "z.nemo", tmp_path / "dir"):
        loaded = sft_model.load_nemo(source)
        assert torch.equal(sft_model.compute_logits(loaded, ids), expected)
        assert loaded.tokenizer.library == "sentencepiece" and loaded.tokenizer.path.name == "tokenizer.model"


def _hostile(path, member: tarfile.TarInfo, data: bytes = b"x"):
    with tarfile.open(path, "w:") as tar:
        info = tarfile.TarInfo("model_config.yaml")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"{}"))
        tar.addfile(member, io.BytesIO(data) if member.isfile() else None)


def _member(name, kind=tarfile.REGTYPE, linkname=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    info.size = 1 if kind == tarfile.REGTYPE else 0
    return info


@pytest.mark.parametrize(("member", "message"), [
    (_member("../escaped.txt"), "leaves the archive"),
    (_member("./model_weights/../../escaped.txt"), "leaves the archive"),
    (_member("/tmp/sft-absolute-escape.txt"), "absolute path"),
    (_member("link", tarfile.SYMTYPE, "/etc/passwd"), "link member"),
    (_member("hard", tarfile.LNKTYPE, "/etc/passwd"), "link member"),
    (_member("dev", tarfile.CHRTYPE), "special member"),
    (_member("fifo", tarfile.FIFOTYPE), "special member"),
])
def test_hostile_members_are_refused_and_nothing_is_written(tmp_path, member, message):
    import sft_model

    archive = tmp_path / "evil.nemo"
    _hostile(archive, member)
    target = tmp_path / "sandbox" / "target"
    target.parent.mkdir()
    before = set(tmp_path.rglob("*"))
    with pytest.raises(NemoArchiveError, match=message):
        sft_model.load_nemo(archive)
    from sft_model.nemo.archive import extract

    with pytest.raises(NemoArchiveError, match=message):
        extract(archive, target)
    assert set(tmp_path.rglob("*")) == before  # not even the harmless member was extracted
    assert not os.path.exists("/tmp/sft-absolute-escape.txt")


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("victim", ["common.pt", ".metadata"])
def test_pickle_payloads_are_never_executed(nemo_file, tmp_path, victim):
    import sft_model

    marker = tmp_path / "pwned"
    src = tmp_path / "src"
    with tarfile.open(nemo_file) as tar:
        tar.extractall(src, filter="data")
    (src / "model_weights" / victim).write_bytes(pickle.dumps(_Payload(str(marker))))
    from sft_model.nemo.archive import write

    write(src, tmp_path / "evil.nemo")
    for source in (tmp_path / "evil.nemo", src):
        with pytest.raises(NemoArchiveError, match=r"refusing|unsafe"):
            sft_model.load_nemo(source)
    assert not marker.exists()


def test_truncated_and_garbage_archives_are_one_line(nemo_file, tmp_path):
    import sft_model

    data = nemo_file.read_bytes()
    (tmp_path / "cut.nemo").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.nemo").write_bytes(b"not a tar at all" * 100)
    for name in ("cut.nemo", "junk.nemo"):
        with pytest.raises(NemoArchiveError) as err:
            sft_model.load_nemo(tmp_path / name)
        assert "\n" not in str(err.value) and name in str(err.value)


def test_weights_that_do_not_fit_the_config_are_one_line(nemo_file, tmp_path):
    import sft_model

    src = tmp_path / "src"
    with tarfile.open(nemo_file) as tar:
        tar.extractall(src, filter="data")
    text = (src / "model_config.yaml").read_text().replace("hidden_size: 64", "hidden_size: 128")
    (src / "model_config.yaml").write_text(text)
    with pytest.raises(NemoArchiveError) as err:
        sft_model.load_nemo(src)
    assert "\n" not in str(err.value)
