"""Input files: which kind a file is, and its records with their rows.

Kinds, told apart by their content (a suffix that contradicts the content is an error):

=================  ====================================================================  ===========================
kind               how it is recognised                                                  the row in ``file:row``
=================  ====================================================================  ===========================
JSON Lines         anything else (a ``.json`` file of one object per line too)           the line number
``.jsonl.gz``      gzip magic, JSON Lines inside                                         the line of the decompressed text
JSON array         first non-blank character ``[`` (also gzip-compressed)                the element's position
Parquet            ``PAR1`` magic                                                        the row's position in the file
Arrow              ``ARROW1`` magic (IPC file, Feather v2) or an IPC stream              the row's position in the file
datasets           a directory with ``state.json`` (``Dataset.save_to_disk``)            the row's position in the dataset
=================  ====================================================================  ===========================

Every kind is read as a stream of chunks (``Input.chunks``); nothing holds a whole file in memory.
The record format (prompt-response, messages, ...) is chosen apart from this (``--format``).
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

from sft_data.errors import RecordProblem, SftError
from sft_data.inputs.arrow import (
    ARROW_FILE_MAGIC,
    ARROW_STREAM_MAGIC,
    DATASET_DICT,
    DATASETS_STATE,
    PARQUET_MAGIC,
    ArrowInput,
    DatasetsInput,
    ParquetInput,
    dataset_dict_splits,
)
from sft_data.inputs.base import Chunk, Input, decode_chunk
from sft_data.inputs.json_array import JsonArrayInput
from sft_data.inputs.lines import BOM, JsonLinesInput
from sft_data.records import Record

__all__ = ["Chunk", "Input", "decode_chunk", "is_input_directory", "open_input", "read_input"]

GZIP_MAGIC = b"\x1f\x8b"
SNIFF = 1 << 16


def is_input_directory(path: Path) -> bool:
    """Whether ``path`` is a directory this module reads (a ``datasets.save_to_disk`` one)."""
    return path.is_dir() and ((path / DATASETS_STATE).is_file() or (path / DATASET_DICT).is_file())


def open_input(path: str | Path) -> Input:
    """The input at ``path``, its kind recognised from its content."""
    path = Path(path)
    if path.is_dir():
        return _directory(path)
    try:
        with path.open("rb") as handle:
            head = handle.read(8)
    except OSError as exc:
        raise SftError(f"{path}: cannot open ({exc.strerror})") from None
    if head.startswith(PARQUET_MAGIC):
        return ParquetInput(path)
    if head.startswith(ARROW_FILE_MAGIC) or head.startswith(ARROW_STREAM_MAGIC):
        return ArrowInput(path)
    suffixes = [s.lower() for s in path.suffixes]
    for suffix, what in ((".parquet", "Parquet"), (".arrow", "Arrow"), (".feather", "Arrow")):
        if suffixes[-1:] == [suffix]:
            raise SftError(f"{path}: not a {what} file (it does not start with the {what} magic bytes)")
    compressed = head.startswith(GZIP_MAGIC)
    if not compressed and suffixes[-1:] == [".gz"]:
        raise SftError(f"{path}: not a gzip file (it does not start with the gzip magic bytes)")
    if _first_character(path, compressed) == ord("["):
        return JsonArrayInput(path, compressed)
    return JsonLinesInput(path, compressed)


def _directory(path: Path) -> Input:
    if (path / DATASETS_STATE).is_file():
        return DatasetsInput(path)
    if (path / DATASET_DICT).is_file():
        splits = ", ".join(dataset_dict_splits(path)) or "its splits"
        raise SftError(f"{path}: a datasets DatasetDict; give one split's directory ({splits})")
    raise SftError(f"{path}: a directory, but not one written by datasets' save_to_disk (no {DATASETS_STATE})")


def _first_character(path: Path, compressed: bool) -> int | None:
    """The first byte that is not blank (after a BOM), looking no further than ``SNIFF`` bytes."""
    try:
        with gzip.open(path, "rb") if compressed else path.open("rb") as handle:
            head = handle.read(SNIFF)
    except (OSError, EOFError):
        return None  # reading reports the damage, located
    head = head.removeprefix(BOM).lstrip(b" \t\r\n")
    return head[0] if head else None


def read_input(path: str | Path) -> Iterator[Record | RecordProblem]:
    """Every record of ``path`` (and a problem for each bad row), read and decoded in this process."""
    for chunk in open_input(path).chunks():
        yield from decode_chunk(chunk)
