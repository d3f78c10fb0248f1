"""What a ``.nemo`` file may put on disk: only what the model needs, no more bytes than its metadata says.

``model_config.yaml`` and ``model_weights/.metadata`` are read into memory (each under a cap) and
never written. The config's ``nemo:`` references name the tokenizer files (checked plain names,
each under ``artifact_bytes``); the metadata names the ``.distcp`` files and how many bytes each
holds. Only those members are extracted, after every declared size has been checked, so junk
members, a gzip bomb or a header declaring terabytes are refused before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from sft_model.config import ModelConfig
from sft_model.errors import NemoArchiveError
from sft_model.nemo import refs, untrusted
from sft_model.nemo.archive import MAX_MEMBERS, Archive

CONFIG_FILE = "model_config.yaml"
WEIGHTS_DIR = "model_weights"
_METADATA = f"{WEIGHTS_DIR}/.metadata"
_SMALL = (f"{WEIGHTS_DIR}/metadata.json", f"{WEIGHTS_DIR}/common.pt")


@dataclass(frozen=True)
class Limits:
    """Caps on what reading a ``.nemo`` may extract (the ``.distcp`` sizes come from its metadata)."""

    members: int = MAX_MEMBERS
    config_bytes: int = 16 << 20
    metadata_bytes: int = 256 << 20
    """``model_weights/.metadata``, ``metadata.json`` and ``common.pt`` each."""
    artifact_bytes: int = 1 << 30
    """Each tokenizer file."""


LIMITS = Limits()


def _cap(limits: Limits):
    def cap(name: str) -> int | None:
        if name == CONFIG_FILE:
            return limits.config_bytes
        if name == _METADATA or name in _SMALL:
            return limits.metadata_bytes
        return None  # the rest is bounded once the config and the metadata are read

    return cap


def parse_config(text: bytes | str, origin: str | Path) -> ModelConfig:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    try:
        return ModelConfig.from_yaml(text)
    except yaml.YAMLError as exc:  # pragma: no cover - from_yaml already turns these into ModelConfigError
        raise NemoArchiveError(f"{origin}: {CONFIG_FILE} is not valid YAML ({exc})") from None


def read_config(path: str | Path, limits: Limits = LIMITS) -> ModelConfig:
    """``model_config.yaml`` of a ``.nemo`` file or extracted directory, extracting nothing."""
    path = Path(path)
    if path.is_dir():
        file = path / CONFIG_FILE
        if not file.is_file():
            raise NemoArchiveError(f"{path}: no {CONFIG_FILE} (not an extracted .nemo directory)")
        return parse_config(file.read_text(encoding="utf-8"), path)
    with Archive(path, max_members=limits.members, cap=_cap(limits)) as archive:
        return _config(archive, limits)


def _config(archive: Archive, limits: Limits) -> ModelConfig:
    data = archive.read(CONFIG_FILE, limits.config_bytes)
    if data is None:
        raise NemoArchiveError(f"{archive.path}: no {CONFIG_FILE} in the archive (not a .nemo file?)")
    return parse_config(data, archive.path)


def read_metadata(path: str | Path, limits: Limits = LIMITS):
    """The DCP metadata of a ``.nemo`` file or extracted directory (allow-listed), or None without weights."""
    path = Path(path)
    if path.is_dir():
        file = path / _METADATA
        return untrusted.read_metadata(file.read_bytes(), path) if file.is_file() else None
    with Archive(path, max_members=limits.members, cap=_cap(limits)) as archive:
        data = archive.read(_METADATA, limits.metadata_bytes)
        return None if data is None else untrusted.read_metadata(data, path)


def _weights_plan(archive: Archive, limits: Limits) -> dict[str, tuple[str, int]]:
    if archive.file(f"{WEIGHTS_DIR}/metadata.json") is None:
        legacy = [n for n in archive.members if n == "model_weights.ckpt" or n.split("/")[0].startswith("mp_rank_")]
        what = f"legacy weights ({legacy[0]})" if legacy else f"no {WEIGHTS_DIR}/metadata.json"
        raise NemoArchiveError(f"{archive.path}: {what}; only megatron-core dist checkpoints (torch_dist) are read")
    data = archive.read(_METADATA, limits.metadata_bytes)
    if data is None:
        raise NemoArchiveError(f"{archive.path}: no {_METADATA} (not a torch_dist checkpoint)")
    files = untrusted.storage_plan(untrusted.read_metadata(data, archive.path), archive.path)
    plan = {n: (n, limits.metadata_bytes) for n in (_METADATA, *_SMALL) if archive.file(n) is not None}
    for name, size in files.items():
        plan[f"{WEIGHTS_DIR}/{name}"] = (f"{WEIGHTS_DIR}/{name}", size)
    return plan


def unpack(path: str | Path, root: str | Path | None, tokenizer_dir: str | Path | None, *,
           limits: Limits = LIMITS) -> ModelConfig:
    """Extract a ``.nemo`` file's weights under ``root`` (None: no weights) and its tokenizer files
    into ``tokenizer_dir`` under their original names (None: none); returns its config."""
    path = Path(path)
    with Archive(path, max_members=limits.members, cap=_cap(limits)) as archive:
        config = _config(archive, limits)
        if root is not None:
            archive.extract(root, _weights_plan(archive, limits))
        if tokenizer_dir is not None:
            plan = {}
            for artifact, name in refs.tokenizer_artifacts(config.tokenizer, path):
                if archive.file(artifact.member) is None:
                    raise NemoArchiveError(f"{path}: tokenizer file {artifact.ref} is referenced but not in the archive")
                plan[artifact.member] = (name, limits.artifact_bytes)
            archive.extract(tokenizer_dir, plan)
    return config
