"""Import the reference's packed ``.npy`` files (``prepare_packed_ft_dataset.py``) into our format.

NeMo saved a list of dicts with ``np.save``: an object array, i.e. a pickle. Each dict is one bin:

- ``input_ids``: the bin's sequences back to back (each with its EOS);
- ``loss_mask``: already shifted per sequence: ``loss_mask[i]`` says whether ``input_ids[i + 1]``
  is trained, within the sequence; the last position of a sequence predicts nothing;
- ``seq_start_id``: where each sequence starts (the first is 0; the end is implied).

Unpickling can run arbitrary code, so the file is first read with ``allow_pickle=False``; only
when the user vouches for it (``allow_pickle=True`` / ``--allow-pickle``) is it unpickled, and even
then its structure is checked before anything is written.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from sft_data.errors import SftError
from sft_data.store import write_prepared
from sft_data.types import TokenizedSample

NAME_PATTERN = re.compile(r"packed_(\d+)_seed(\d+)")
PICKLE_REFUSAL = (
    "{path} holds pickled Python objects (NeMo's packed .npy format); unpickling a file can execute "
    "arbitrary code, so it is refused by default; pass --allow-pickle (allow_pickle=True) only "
    "for a file you trust"
)


def load_nemo_packed(path: str | os.PathLike, *, allow_pickle: bool = False) -> np.ndarray:
    """Read the file's array; pickled content only with ``allow_pickle``."""
    path = Path(path)
    if not path.is_file():
        raise SftError(f"{path}: no such file")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" not in str(exc):
            raise SftError(f"{path}: not a readable .npy file ({exc})") from None
    except OSError as exc:
        raise SftError(f"{path}: not a readable .npy file ({exc})") from None
    if not allow_pickle:
        raise SftError(PICKLE_REFUSAL.format(path=path))
    try:
        return np.load(path, allow_pickle=True)
    except Exception as exc:  # a corrupt pickle can fail in many ways; the user sees one line
        raise SftError(f"{path}: could not unpickle ({type(exc).__name__}: {exc})") from None


def _int_array(value: Any, what: str, where: str) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim != 1 or not (np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_ or array.size == 0):
        raise SftError(f"{where}: {what} must be a flat list of integers")
    return array.astype(np.int64)


def convert_bins(data: Any, where: str) -> tuple[list[TokenizedSample], list[list[int]], int]:
    """NeMo bins -> our samples (mask unshifted to our convention), bins and the fullest bin's size."""
    if not isinstance(data, np.ndarray) or data.dtype != object or data.ndim != 1:
        found = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise SftError(f"{where}: not a NeMo packed file: expected an object array of dicts, found {found}")
    samples: list[TokenizedSample] = []
    bins: list[list[int]] = []
    fullest = 0
    for b, item in enumerate(data.tolist()):
        at = f"{where}: bin {b}"
        if not isinstance(item, dict) or not {"input_ids", "loss_mask", "seq_start_id"} <= item.keys():
            raise SftError(f"{at}: expected a dict with input_ids, loss_mask and seq_start_id")
        ids = _int_array(item["input_ids"], "input_ids", at)
        mask = _int_array(item["loss_mask"], "loss_mask", at)
        starts = _int_array(item["seq_start_id"], "seq_start_id", at)
        if len(mask) != len(ids):
            raise SftError(f"{at}: loss_mask has {len(mask)} entries for {len(ids)} input_ids")
        if not ((mask == 0) | (mask == 1)).all():
            raise SftError(f"{at}: loss_mask must hold only 0/1 or booleans")
        if ids.size and (ids.min() < 0 or ids.max() >= 2**31):
            raise SftError(f"{at}: input_ids must be non-negative int32 token ids")
        bounds = np.append(starts, len(ids))
        if not starts.size or starts[0] != 0 or (np.diff(bounds) < 2).any():
            raise SftError(f"{at}: seq_start_id must start at 0 and split input_ids into sequences of 2+ tokens")
        bins.append([])
        for start, end in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            # NeMo's mask[i] covers label i + 1; ours marks the predicted token itself
            ours = [False, *mask[start : end - 1].astype(bool).tolist()]
            bins[-1].append(len(samples))
            samples.append(TokenizedSample(ids[start:end].tolist(), ours, source=f"{at} sequence {len(bins[-1]) - 1}"))
        fullest = max(fullest, len(ids) - len(starts))  # positions: each sequence's length - 1
    return samples, bins, fullest


def import_nemo_packed(
    path: str | os.PathLike,
    output: str | os.PathLike,
    *,
    allow_pickle: bool = False,
    pack_size: int | None = None,
) -> dict[str, Any]:
    """Convert a NeMo packed ``.npy`` into a prepared dataset at ``output``; returns a summary.

    The pack size is ``pack_size`` if given, else the one in the reference's file name
    (``packed_{size}_seed{seed}.npy``), else the fullest bin's size.
    """
    path = Path(path)
    samples, bins, fullest = convert_bins(load_nemo_packed(path, allow_pickle=allow_pickle), str(path))
    match = NAME_PATTERN.search(path.name)
    size = pack_size or (int(match.group(1)) if match else fullest)
    if fullest > size:
        raise SftError(f"{path}: a bin fills {fullest} positions, more than the pack size {size}")
    header = {
        "source": {"kind": "nemo-packed-npy", "file": path.name},
        "packing": {"algorithm": "imported", "seed": int(match.group(2)) if match else None},
        "tokenizer": None,
    }
    write_prepared(output, samples, bins=bins, pack_size=size, header=header)
    positions = sum(len(s.input_ids) - 1 for s in samples)
    return {
        "bins": len(bins),
        "sequences": len(samples),
        "tokens": sum(len(s.input_ids) for s in samples),
        "pack_size": size,
        "efficiency": positions / (len(bins) * size) if bins else 0.0,
    }
