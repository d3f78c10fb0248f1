"""Streaming safetensors: read an HF checkpoint one tensor at a time, write one tensor at a time.

Reading uses ``safe_open`` (memory-mapped, no pickle) over ``model.safetensors`` or a sharded
``model.safetensors.index.json``. Writing streams each tensor's bytes to a data file and writes the
header at the end, so memory stays at one tensor; shards split at ``max_shard_bytes`` and get an index.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path

import torch
from safetensors import safe_open

from sft_model.errors import ConversionError

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
DTYPES = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16", torch.float64: "F64",
          torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
          torch.bool: "BOOL"}


class CheckpointReader:
    """Tensor names and tensors of an HF safetensors checkpoint directory."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        index, single = self.directory / INDEX, self.directory / SINGLE
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            except (ValueError, KeyError) as exc:
                raise ConversionError(f"{index}: not a safetensors index ({exc})") from None
            self._file_of = {name: self.directory / file for name, file in weight_map.items()}
        elif single.is_file():
            self._file_of = {}
            with self._open(single) as f:
                self._file_of = dict.fromkeys(f.keys(), single)
        else:
            found = [p.name for p in self.directory.glob("*.bin")]
            extra = f" (found {found[0]}: pickled PyTorch weights are not read; save with safetensors)" if found else ""
            raise ConversionError(f"{self.directory}: no {SINGLE} or {INDEX}{extra}")
        self._handles: dict[Path, object] = {}
        self.read: set[str] = set()

    def _open(self, path: Path):
        if not path.is_file():
            raise ConversionError(f"{path}: safetensors shard listed in the index is missing")
        try:
            return safe_open(str(path), framework="pt")
        except Exception as exc:  # safetensors raises its own error types
            raise ConversionError(f"{path}: not a readable safetensors file ({exc})") from None

    def names(self) -> set[str]:
        return set(self._file_of)

    def get(self, name: str) -> torch.Tensor:
        if name not in self._file_of:
            raise ConversionError(f"{self.directory}: the checkpoint has no tensor {name!r}")
        path = self._file_of[name]
        if path not in self._handles:
            self._handles[path] = self._open(path).__enter__()
        self.read.add(name)
        return self._handles[path].get_tensor(name)

    def close(self) -> None:
        for handle in self._handles.values():
            handle.__exit__(None, None, None)
        self._handles.clear()


class CheckpointWriter:
    """Writes ``model.safetensors`` (or shards plus an index) tensor by tensor."""

    def __init__(self, directory: Path, max_shard_bytes: int = 5 * 2**30):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_shard_bytes = max_shard_bytes
        self._shards: list[tuple[Path, dict]] = []
        self._data = None
        self._offset = 0

    def _new_shard(self) -> None:
        if self._data:
            self._data.close()
        path = self.directory / f".shard-{len(self._shards)}.data"
        self._shards.append((path, {}))
        self._data = open(path, "wb")  # noqa: SIM115 - closed in _new_shard/close
        self._offset = 0

    def add(self, name: str, tensor: torch.Tensor) -> None:
        if tensor.dtype not in DTYPES:
            raise ConversionError(f"{name}: dtype {tensor.dtype} cannot be written to safetensors")
        raw = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        if not self._shards or (self._offset and self._offset + len(raw) > self.max_shard_bytes):
            self._new_shard()
        self._data.write(raw)
        self._shards[-1][1][name] = {"dtype": DTYPES[tensor.dtype], "shape": list(tensor.shape),
                                     "data_offsets": [self._offset, self._offset + len(raw)]}
        self._offset += len(raw)

    def close(self) -> list[Path]:
        if self._data:
            self._data.close()
        n = len(self._shards)
        names = [SINGLE] if n == 1 else [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]
        weight_map, total = {}, 0
        for (data_path, header), name in zip(self._shards, names, strict=True):
            blob = json.dumps({"__metadata__": {"format": "pt"}, **header}, separators=(",", ":")).encode()
            blob += b" " * (-len(blob) % 8)  # the format aligns the data section to 8 bytes
            out = self.directory / name
            with open(out, "wb") as f, open(data_path, "rb") as data:
                f.write(struct.pack("<Q", len(blob)))
                f.write(blob)
                shutil.copyfileobj(data, f, 16 * 2**20)
            os.unlink(data_path)
            for tensor_name, entry in header.items():
                weight_map[tensor_name] = name
                total += entry["data_offsets"][1] - entry["data_offsets"][0]
        if n > 1:
            index = {"metadata": {"total_size": total}, "weight_map": weight_map}
            (self.directory / INDEX).write_text(json.dumps(index, indent=2), encoding="utf-8")
        return [self.directory / name for name in names]
