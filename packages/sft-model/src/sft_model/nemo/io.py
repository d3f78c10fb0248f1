"""``save_nemo`` / ``load_nemo``: a model, its config and its tokenizer in one ``.nemo``.

Layout (the reference's): ``model_config.yaml``, ``model_weights/`` (torch_dist dist checkpoint,
keys prefixed ``model.``), tokenizer artifacts ``<hex>_<name>``. Saved from any TP/PP (every rank
calls ``save_nemo``; rank 0 packs the tar), loaded into any TP/PP. Reading goes through
``unpack`` (what is extracted, and how much) and ``untrusted`` (what is unpickled).
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch.distributed as dist

from sft_model.config import ModelConfig
from sft_model.errors import NemoArchiveError
from sft_model.handle import ModelHandle
from sft_model.nemo import archive, checkpoint, unpack, untrusted
from sft_model.nemo.tokenizer import TokenizerFiles, collect, embed, unpacked
from sft_model.nemo.unpack import CONFIG_FILE, WEIGHTS_DIR


@dataclass
class LoadedModel:
    """What ``load_nemo`` returns: this rank's model, the config, and the tokenizer files (or None)."""

    handle: ModelHandle
    """This rank's model and what callers need to know about it."""
    config: ModelConfig
    tokenizer: TokenizerFiles | None
    """The embedded tokenizer, extracted into ``tokenizer_dir``."""
    tokenizer_dir: tempfile.TemporaryDirectory | None = field(default=None, repr=False)
    """Holds the extracted tokenizer files; removed when the last reference to it goes."""

    @property
    def model(self) -> Any:
        """This pipeline stage's ``GPTModel``."""
        return self.handle.module


def unwrap(model):
    """The GPTModel inside DDP / Float16Module wrappers."""
    while hasattr(model, "module"):
        model = model.module
    return model


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _shared_staging(out: Path) -> Path:
    """A staging directory beside the output, its name agreed by all ranks."""
    name = [f".{out.name}.staging-{uuid.uuid4().hex[:12]}"]
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.broadcast_object_list(name, src=0)
    return out.parent / name[0]


def save_nemo(path: str | Path, model: ModelHandle | Any, config: ModelConfig, tokenizer: TokenizerFiles | str | Path | None = None,
              *, select=None) -> Path:
    """Write ``path`` (.nemo tar). Every rank calls it; each writes its own weight shards.

    ``select(key)`` keeps only some weights (a PEFT method's adapters: an adapter-only ``.nemo``).

    ``tokenizer`` is embedded (a ``TokenizerFiles``, or a path to a ``.model`` / ``tokenizer.json`` /
    directory); without one the config's tokenizer section is written as given.
    """
    from sft_model.parallel import ensure_parallel_state

    ensure_parallel_state()
    out = Path(path)
    vocab_size = model.vocab_size if isinstance(model, ModelHandle) else None
    model = model.module if isinstance(model, ModelHandle) else unwrap(model)
    if _rank() == 0:
        out.parent.mkdir(parents=True, exist_ok=True)
    staging = _shared_staging(out)
    try:
        if _rank() == 0:
            (staging / WEIGHTS_DIR).mkdir(parents=True)
        _barrier()
        checkpoint.save(model, staging / WEIGHTS_DIR, select)
        _barrier()
        if _rank() == 0:
            cfg = config
            if cfg.vocab_size is None and vocab_size is not None:
                cfg = cfg.replace(vocab_size=vocab_size)
            if tokenizer is not None:
                files = tokenizer if isinstance(tokenizer, TokenizerFiles) else TokenizerFiles.from_path(tokenizer)
                files.config = cfg.tokenizer if files.config.model is None else files.config
                cfg = cfg.replace(tokenizer=embed(files, staging))
            (staging / CONFIG_FILE).write_text(cfg.to_yaml(), encoding="utf-8")
            archive.write(staging, out)
        _barrier()
    finally:
        if _rank() == 0:
            shutil.rmtree(staging, ignore_errors=True)
    return out


def _open(path: Path, work: Path | None, tokenizer_dir: Path | None, limits: unpack.Limits):
    """(config, weights directory, tokenizer files) of a ``.nemo`` directory, or of a ``.nemo`` file
    whose weights are extracted into ``work`` (None: not extracted)."""
    if not path.exists():
        raise NemoArchiveError(f"{path}: no such file or directory")
    if path.is_dir():
        config = unpack.read_config(path, limits)
        tokenizer = collect(config.tokenizer, path, tokenizer_dir, path) if tokenizer_dir is not None else None
        return config, path / WEIGHTS_DIR, tokenizer
    config = unpack.unpack(path, work, tokenizer_dir, limits=limits)
    tokenizer = unpacked(config.tokenizer, tokenizer_dir) if tokenizer_dir is not None else None
    return config, None if work is None else work / WEIGHTS_DIR, tokenizer


def load_weights(model: ModelHandle | Any, path: str | Path, *, select=None, limits: unpack.Limits = unpack.LIMITS) -> ModelConfig:
    """Load (some of) a ``.nemo``'s weights into an already built ``model``; returns its config.

    With ``select`` this reads an adapter-only ``.nemo`` into a model that has the adapters.
    """
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="sft-nemo-") as work:
        config, weights, _ = _open(path, Path(work), None, limits)
        module = model.module if isinstance(model, ModelHandle) else unwrap(model)
        checkpoint.load(module, weights, path, select=select)
        return config


def _barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def read_config(path: str | Path) -> ModelConfig:
    return unpack.read_config(Path(path))


def weight_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Checkpoint key (without ``model.``) → global shape of a ``.nemo``'s weights, read from the
    checkpoint metadata alone (nothing extracted); empty when it has no weights."""
    meta = unpack.read_metadata(Path(path))
    return checkpoint.shapes(meta) if meta is not None else {}


def load_nemo(path: str | Path, *, with_weights: bool = True, overrides: dict[str, Any] | None = None,
              dtype=None, layer_spec_transform=None, absent_ok=None, limits: unpack.Limits = unpack.LIMITS) -> LoadedModel:
    """Build the model for the current parallel state (one process if none) and load the weights.

    ``path`` is a ``.nemo`` file (plain or gzip tar) or an extracted directory. ``overrides``
    replace config fields before the model is built (a trainer's dropout); ``dtype`` builds the
    parameters in another dtype than the checkpoint's precision (fp32 training on a CPU).
    ``layer_spec_transform`` goes to ``build_model`` (adapters in the layer specs); weights the
    checkpoint lacks for which ``absent_ok(key)`` holds keep their built values. ``limits`` caps what
    reading a ``.nemo`` file may extract.
    """
    from sft_model.builder import build_model
    from sft_model.parallel import ensure_parallel_state

    path = Path(path)
    work = tempfile.TemporaryDirectory(prefix="sft-nemo-")
    tok_dir = tempfile.TemporaryDirectory(prefix="sft-tokenizer-")
    try:
        config, weights, tokenizer = _open(path, Path(work.name) if with_weights else None, Path(tok_dir.name), limits)
        if with_weights:  # refuse a hostile checkpoint before building anything (checkpoint.load checks again)
            untrusted.verify_weights(weights, path)
        ensure_parallel_state()
        if config.vocab_size is None:  # reference files: the embedding's rows are the vocabulary
            meta = unpack.read_metadata(path, limits)
            rows = checkpoint.shapes(meta).get("embedding.word_embeddings.weight") if meta is not None else None
            if rows is None:
                raise NemoArchiveError(f"{path}: the config has no vocab_size and the weights no embedding to read it from")
            config = config.replace(vocab_size=rows[0])
        if overrides:
            config = config.replace(**overrides)
        handle = build_model(config, dtype=dtype, init=not with_weights, layer_spec_transform=layer_spec_transform)
        if with_weights:
            checkpoint.load(handle.module, weights, path, absent_ok=absent_ok)
    except BaseException:
        tok_dir.cleanup()
        raise
    finally:
        work.cleanup()
    return LoadedModel(handle, config, tokenizer, tok_dir)
