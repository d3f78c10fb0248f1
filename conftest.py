"""Fixtures shared by every package's tests: a tiny Llama .nemo, hostile copies of it, training configs."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def tiny_nemo(tmp_path_factory) -> Path:
    """A 2-layer, 64-wide Llama (GQA 4/2) with a SentencePiece tokenizer trained on the example corpus."""
    from sft_data import load_tokenizer
    from sft_data.tokenizers.training import train_sentencepiece
    from sft_model.random_init import init_nemo

    root = tmp_path_factory.mktemp("tiny-nemo")
    tok = train_sentencepiece([REPO / "examples/data/corpus.txt"], root / "tok.model", vocab_size=600)
    return init_nemo("llama", tok, load_tokenizer(tok).vocab_size, root / "tiny.nemo", num_layers=2, hidden_size=64,
                     num_attention_heads=4, num_query_groups=2, ffn_hidden_size=128, encoder_seq_length=64)


@pytest.fixture(scope="session")
def train_config():
    """``train_config(nemo, run_dir, *overrides)``: a TrainConfig for a few CPU steps on the example data."""

    def build(nemo: Path, run_dir: Path, *overrides: str):
        from sft_trainer.config.loading import build_config

        return build_config({}, [
            f"model.restore_from_path={nemo}", f"exp_manager.explicit_log_dir={run_dir}",
            f"model.data.train_ds.file_path={REPO / 'examples/data/train.jsonl'}",
            f"model.data.validation_ds.file_path={REPO / 'examples/data/val.jsonl'}",
            "model.data.train_ds.max_seq_length=64", "model.data.validation_ds.max_seq_length=64",
            "trainer.precision=32", "model.micro_batch_size=4", "model.global_batch_size=8",
            "trainer.sft.max_steps=4", "trainer.sft.val_check_interval=2", "trainer.sft.limit_val_batches=1",
            "model.optim.lr=2e-3", "model.optim.sched.warmup_steps=0", "model.optim.sched.constant_steps=0",
            *overrides,
        ])

    return build


@pytest.fixture
def short_train_config(train_config):
    """``short_train_config(nemo, run_dir, *overrides)``: two steps, no checkpoints, no final .nemo."""
    return lambda nemo, run_dir, *overrides: train_config(
        nemo, run_dir, "model.global_batch_size=4", "trainer.sft.max_steps=2",
        "exp_manager.create_checkpoint_callback=false",
        "exp_manager.checkpoint_callback_params.save_nemo_on_train_end=false", *overrides)


class _Payload:
    """Unpickling this creates ``path`` (it stands for any code an attacker would run)."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


class HostileNemo:
    """Copies of a real ``.nemo`` changed the way an attacker would, built in a test's tmp_path.

    ``marker`` appears only if a payload is unpickled; ``victim`` (outside every target) only if a
    path trick writes there. ``directory=True`` gives the edited extracted directory instead of a tar.
    """

    def __init__(self, source: Path, work: Path):
        self.source, self.work = source, work
        self.marker = work / "pwned"
        self.victim = work / "outside" / "victim.txt"
        self._count = 0

    def unpacked(self) -> Path:
        import tarfile

        self._count += 1
        out = self.work / f"src{self._count}"
        with tarfile.open(self.source) as tar:
            tar.extractall(out, filter="data")
        return out

    def pack(self, src: Path, members: dict[str, bytes] | None = None) -> Path:
        """``src`` as a plain-tar ``.nemo``, plus ``members`` under names of the attacker's choosing."""
        import io
        import tarfile

        out = self.work / f"{src.name}.nemo"
        with tarfile.open(out, "w:") as tar:
            tar.add(src, arcname=".")
            for name, data in (members or {}).items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return out

    @property
    def payload(self) -> _Payload:
        return _Payload(str(self.marker))

    def byte_entry(self, entry: str, value, *, directory: bool = False) -> Path:
        """``torch.save(value)`` appended to the ``.distcp``; every byte entry whose key starts with
        ``entry`` points at it, in a ``.metadata`` that needs only allow-listed classes."""
        import io
        import pickle

        import torch
        from sft_model.nemo.untrusted import read_metadata

        src = self.unpacked()
        weights = src / "model_weights"
        meta = read_metadata((weights / ".metadata").read_bytes(), src)
        buffer = io.BytesIO()
        torch.save(value, buffer)
        data = buffer.getvalue()
        distcp = weights / "__0_0.distcp"
        offset = distcp.stat().st_size
        with open(distcp, "ab") as handle:
            handle.write(data)
        hits = [info for index, info in meta.storage_data.items() if index.fqn.startswith(entry)]
        assert hits, entry
        for info in hits:
            info.offset, info.length = offset, len(data)
        (weights / ".metadata").write_bytes(pickle.dumps(meta))
        return src if directory else self.pack(src)

    def pickle_payload(self, entry: str, *, directory: bool = False) -> Path:
        """The attack as reported: ``torch.save([payload])`` behind the byte entries ``entry``."""
        return self.byte_entry(entry, [self.payload], directory=directory)

    def tokenizer_ref(self, ref: str, *, field: str = "model", member: str | None = None,
                      directory: bool = False) -> Path:
        """The config's tokenizer ``field`` set to ``ref``; ``member`` (any name) holds a real tokenizer."""
        import yaml

        src = self.unpacked()
        cfg = yaml.safe_load((src / "model_config.yaml").read_text())
        real = next(src.glob("*_tok.model")).read_bytes()
        cfg["tokenizer"][field] = [ref] if field == "extra_files" else ref
        (src / "model_config.yaml").write_text(yaml.safe_dump(cfg))
        if directory:
            if member is not None:
                (src / member).parent.mkdir(parents=True, exist_ok=True)
                (src / member).write_bytes(real)
            return src
        return self.pack(src, {member: real} if member is not None else None)


@pytest.fixture
def hostile_nemo(tiny_nemo, tmp_path) -> HostileNemo:
    """Builds hostile variants of ``tiny_nemo`` (see ``HostileNemo``)."""
    (tmp_path / "outside").mkdir()
    return HostileNemo(tiny_nemo, tmp_path)
