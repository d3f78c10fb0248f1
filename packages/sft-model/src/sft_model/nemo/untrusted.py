"""The one restricted loader for the pickled bytes of an untrusted dist checkpoint.

Why a gate in front of megatron-core rather than a load planner inside it: megatron-core 0.19
builds its readers inline. ``TorchDistLoadShardedStrategy.load`` constructs ``MCoreLoadPlanner``
and ``load_common_state_dict`` uses torch's ``DefaultLoadPlanner``; both planners' ``load_bytes``
run ``torch.load(weights_only=False)`` on every byte entry (``common_state``, ``*._extra_state``),
and torch's ``FileSystemReader.read_metadata`` runs plain ``pickle.load`` on ``.metadata``. None of
them can be replaced through ``dist_checkpointing.load``'s arguments, so a planner of ours could
not cover ``common_state``. Instead, ``verify_weights`` unpickles every pickled byte those readers
will touch, exactly as they will find it (same file, offset and length; storage transforms, which
would change the bytes, are refused), through one restricted loader: ``.metadata`` through an
allow-list of checkpoint-metadata classes, byte entries and ``common.pt`` through
``torch.load(weights_only=True)``. A directory with anything else is refused before megatron sees
it. Tensor entries are read by torch with ``weights_only=True`` already. Every path that hands a
checkpoint directory to megatron calls ``verify_weights`` first (``checkpoint.load``,
``checkpoint.global_shapes``), and the decoded extra state is never handed to modules
(``checkpoint.load`` leaves it out): Transformer Engine's ``set_extra_state`` would ``pickle.loads``
a byte tensor without restriction.

The same metadata bounds extraction: ``storage_plan`` gives each ``.distcp`` file's size from the
chunk shapes and dtypes the metadata declares.
"""

from __future__ import annotations

import io
import math
import pickle
from pathlib import Path
from typing import Any

import torch

from sft_model.errors import NemoArchiveError

BYTE_ENTRY_BYTES = 64 << 20
"""Extra state and the common state are small dicts; nothing legitimate comes near this."""
TENSOR_SLACK = 64 << 10
"""``torch.save``'s zip framing around one tensor chunk (about 1.6 KB in practice)."""

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
        if (module, name) not in _ALLOWED_GLOBALS and not (module == "torch" and name in _TORCH_VALUES):
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _first_line(exc: BaseException) -> str:
    """The reason in one line (torch's weights_only error puts it after several lines of advice)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    reason = next((line.removeprefix("WeightsUnpickler error: ") for line in lines
                   if line.startswith("WeightsUnpickler error:")), lines[0] if lines else type(exc).__name__)
    return reason.split(" Please use `torch.serialization")[0][:300]


def read_metadata(data: bytes, origin: str | Path, name: str = ".metadata"):
    """A DCP ``Metadata`` unpickled through the allow-list; anything else is refused."""
    try:
        meta = _MetadataUnpickler(io.BytesIO(data)).load()
    except Exception as exc:
        raise NemoArchiveError(f"{origin}: unsafe or corrupt checkpoint metadata {name} ({_first_line(exc)})") from None
    if type(meta).__name__ != "Metadata" or not isinstance(getattr(meta, "storage_data", None), dict):
        raise NemoArchiveError(f"{origin}: checkpoint metadata {name} is not a checkpoint's metadata")
    return meta


def load_bytes(data: bytes, origin: str | Path, what: str) -> Any:
    """One pickled object through torch's ``weights_only`` unpickler.

    ``io.BytesIO`` is allowed as a value: it is how Transformer Engine stored extra state (a buffer
    whose own contents are never unpickled here, see ``checkpoint.load``).
    """
    try:
        with torch.serialization.safe_globals([io.BytesIO]):
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise NemoArchiveError(f"{origin}: refusing checkpoint entry {what} ({_first_line(exc)})") from None


def _item_limit(meta, index) -> int:
    entry = meta.state_dict_metadata.get(index.fqn)
    chunks = getattr(entry, "chunks", None)
    if chunks is None:
        return BYTE_ENTRY_BYTES
    offsets = tuple(index.offset) if index.offset is not None else None
    sizes = next((c.sizes for c in chunks if tuple(c.offsets) == offsets), None)
    if sizes is None and index.index is not None and 0 <= index.index < len(chunks):
        sizes = chunks[index.index].sizes
    if sizes is None:
        raise ValueError(f"storage entry {index.fqn!r} names no chunk of the tensor")
    itemsize = torch.empty((), dtype=entry.properties.dtype).element_size()
    return math.prod(int(s) for s in sizes) * itemsize + TENSOR_SLACK


def storage_plan(meta, origin: str | Path) -> dict[str, int]:
    """``.distcp`` file name -> the bytes the metadata accounts for in it; refuses what torch must not read.

    File names must be plain names (torch joins them to the checkpoint directory), every entry's
    length must fit the chunk its metadata declares, and no storage transform may apply.
    """
    files: dict[str, int] = {}
    try:
        for index, info in meta.storage_data.items():
            name = info.relative_path
            if not isinstance(name, str) or not name or name in (".", "..") or any(c in name for c in "/\\\0"):
                raise ValueError(f"storage file {name!r} is not a file name inside the checkpoint")
            if getattr(info, "transform_descriptors", None):
                raise ValueError(f"storage entry {index.fqn!r} uses transforms {info.transform_descriptors!r}")
            offset, length = int(info.offset), int(info.length)
            if offset < 0 or length < 0 or length > _item_limit(meta, index):
                raise ValueError(f"storage entry {index.fqn!r} declares {length} bytes at offset {offset}, "
                                 "more than its metadata allows")
            files[name] = max(files.get(name, 0), offset + length)
    except (ValueError, TypeError, AttributeError) as exc:
        raise NemoArchiveError(f"{origin}: refusing checkpoint metadata ({exc})") from None
    return files


def verify_weights(directory: str | Path, origin: str | Path, *, label: str = "model_weights"):
    """Refuse a checkpoint directory whose pickled bytes are not plain data; returns its metadata.

    ``label`` is how messages name the directory (a ``.nemo``'s ``model_weights``, a training
    checkpoint's ``dist``)."""
    directory = Path(directory)
    if not (directory / "metadata.json").is_file():
        legacy = [p.name for p in directory.parent.glob("model_weights.ckpt")] + [
            p.name for p in directory.parent.glob("mp_rank_*")]
        what = f"legacy weights ({legacy[0]})" if legacy else f"no {label}/metadata.json"
        raise NemoArchiveError(f"{origin}: {what}; only megatron-core dist checkpoints (torch_dist) are read")
    for extra in directory.glob("__*.metadata"):  # per-rank metadata files are read by torch too
        read_metadata(extra.read_bytes(), origin, f"{label}/{extra.name}")
    if not (directory / ".metadata").is_file():
        raise NemoArchiveError(f"{origin}: no {label}/.metadata (not a torch_dist checkpoint)")
    meta = read_metadata((directory / ".metadata").read_bytes(), origin, f"{label}/.metadata")
    files = storage_plan(meta, origin)
    for name, needed in files.items():
        path = directory / name
        if path.is_symlink() or not path.is_file() or path.stat().st_size < needed:
            raise NemoArchiveError(f"{origin}: checkpoint file {label}/{name} is missing, a link, "
                                   f"or shorter than the {needed} bytes its metadata declares")
    for index, info in meta.storage_data.items():
        if not hasattr(meta.state_dict_metadata.get(index.fqn), "chunks"):  # a byte entry: pickled
            with open(directory / info.relative_path, "rb") as handle:
                handle.seek(info.offset)
                load_bytes(handle.read(info.length), origin, index.fqn)
    common = directory / "common.pt"
    if common.is_file():
        load_bytes(common.read_bytes(), origin, f"{label}/common.pt")
    return meta
