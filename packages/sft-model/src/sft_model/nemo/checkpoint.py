"""``model_weights/``: a megatron-core dist checkpoint (torch_dist) with the reference's ``model.`` prefix.

Saving writes this process's shards; loading reshards to whatever TP/PP the model was built
for. No pickle from a file is executed: PyTorch DCP reads its ``.metadata`` with plain
``pickle.load``, so we first unpickle it with an allow-list of checkpoint-metadata classes and
refuse anything else; ``common.pt`` is checked with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import torch

from sft_model.errors import NemoArchiveError

PREFIX = "model."

# Exactly the globals a torch_dist ``.metadata`` pickle references (no dotted names, no modules).
_DCP = "torch.distributed.checkpoint."
_ALLOWED_GLOBALS = {
    *((_DCP + "metadata", n) for n in ("Metadata", "MetadataIndex", "StorageMeta", "TensorProperties",
                                      "TensorStorageMetadata", "BytesStorageMetadata", "ChunkStorageMetadata",
                                      "_MEM_FORMAT_ENCODING")),
    *((_DCP + "planner", n) for n in ("SavePlan", "WriteItem", "WriteItemType", "TensorWriteData")),
    (_DCP + "filesystem", "_StorageInfo"),
    ("torch.serialization", "_get_layout"), ("torch", "Size"), ("collections", "OrderedDict"),
}
_TORCH_VALUES = {"float32", "float16", "bfloat16", "float64", "int64", "int32", "int16", "int8", "uint8", "bool",
                 "strided", "contiguous_format", "preserve_format", "float8_e4m3fn", "float8_e5m2", "complex64"}


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        allowed = (module, name) in _ALLOWED_GLOBALS or (module == "torch" and name in _TORCH_VALUES)
        if not allowed:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def check_safe(directory: Path, origin: str | Path) -> None:
    """Refuse a weights directory whose pickled files reference anything but checkpoint metadata."""
    directory = Path(directory)
    if not (directory / "metadata.json").is_file():
        legacy = [p.name for p in directory.parent.glob("model_weights.ckpt")] + [
            p.name for p in directory.parent.glob("mp_rank_*")]
        what = f"legacy weights ({legacy[0]})" if legacy else "no model_weights/metadata.json"
        raise NemoArchiveError(f"{origin}: {what}; only megatron-core dist checkpoints (torch_dist) are read")
    for meta in directory.glob("*.metadata"):
        try:
            _MetadataUnpickler(io.BytesIO(meta.read_bytes())).load()
        except Exception as exc:
            raise NemoArchiveError(f"{origin}: unsafe or corrupt checkpoint metadata {meta.name} ({exc})") from None
    common = directory / "common.pt"
    if common.is_file():
        try:
            torch.load(common, map_location="cpu", weights_only=True)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise NemoArchiveError(f"{origin}: refusing model_weights/common.pt ({first})") from None


def _sharded(model, select) -> dict:
    sharded = model.sharded_state_dict(prefix=PREFIX)
    if select is None:
        return sharded
    return {k: v for k, v in sharded.items() if select(k.removeprefix(PREFIX))}


def save(model, directory: Path, select=None) -> None:
    """Every rank writes its shards of ``model`` (all ranks must call this); ``select(key)``, given
    a key without the ``model.`` prefix, keeps only some tensors (a PEFT method's adapters)."""
    from megatron.core import dist_checkpointing

    dist_checkpointing.save(_sharded(model, select), str(directory))


def _stored_keys(directory: Path) -> set[str]:
    meta = _MetadataUnpickler(io.BytesIO((Path(directory) / ".metadata").read_bytes())).load()
    return set(meta.state_dict_metadata)


def _stored(key: str, stored: set[str]) -> bool:
    # sharded objects (extra state) are stored as "<key>/shard_…"
    return key in stored or any(name.startswith(key + "/") for name in stored)


def load(model, directory: Path, origin: str | Path, *, select=None, absent_ok=None) -> None:
    """Fill ``model`` (this rank's shards) from the checkpoint, resharding as needed.

    ``select(key)`` restricts loading to some tensors; tensors the checkpoint lacks for which
    ``absent_ok(key)`` is true keep their built values (adapters absent from a base model).
    """
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing.core import CheckpointingException
    from torch.distributed.checkpoint.api import CheckpointException

    check_safe(directory, origin)
    sharded = _sharded(model, select)
    if absent_ok is not None:
        stored = _stored_keys(directory)
        sharded = {k: v for k, v in sharded.items()
                   if not absent_ok(k.removeprefix(PREFIX)) or _stored(getattr(v, "key", k), stored)}
    wanted = {k.removeprefix(PREFIX) for k in sharded}
    try:
        state = dist_checkpointing.load(sharded, str(directory))
    except (CheckpointingException, CheckpointException, KeyError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise NemoArchiveError(f"{origin}: weights do not match the model config ({first})") from None
    result = model.load_state_dict({k.removeprefix(PREFIX): v for k, v in state.items()}, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("_extra_state") and k in wanted]
    if missing:
        raise NemoArchiveError(f"{origin}: the checkpoint has no value for {len(missing)} tensors, e.g. {missing[0]!r}")


def global_shapes(directory: Path) -> dict[str, tuple[int, ...]]:
    """Checkpoint key (without ``model.``) → global shape, from the DCP metadata (through the allow-list).

    megatron's ``load_tensors_metadata`` fails on this torch (TensorProperties gained ``strides``).
    """
    check_safe(directory, directory)
    meta = _MetadataUnpickler(io.BytesIO((Path(directory) / ".metadata").read_bytes())).load()
    return {k[len(PREFIX):] if k.startswith(PREFIX) else k: tuple(v.size)
            for k, v in meta.state_dict_metadata.items() if hasattr(v, "size")}
