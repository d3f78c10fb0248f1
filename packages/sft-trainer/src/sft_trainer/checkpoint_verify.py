"""``verify(path)``: is a training checkpoint directory complete and safe to resume from?

Resume and pruning trust only checkpoints that verify, so a truncated, tampered or foreign
directory is reported and skipped (never loaded, never deleted). A checkpoint verifies when:

- its name is a checkpoint's name and ``state.json`` is one JSON object of this format
  (``train_state.FORMAT``) with every key, each of the right type, and the name agrees with it
  (step, consumed samples, epoch, validation loss); a checkpoint of the earlier per-rank layout
  is named as such;
- every rank's RNG file of the saved layout exists and loads with ``weights_only=True`` (a pickled
  call is refused, never run) and holds what the writer puts there;
- ``dist/`` passes the restricted loader that guards ``.nemo`` weights (``verify_weights``: its
  ``.metadata`` through an allow-list, every pickled byte entry through ``weights_only``, every
  data file as long as the metadata declares) and holds model weights and optimizer state.

The answer is one line (``None`` when all is well), for the resume warning and error messages.
"""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from sft_trainer.train_state import (
    DIST_DIR,
    FORMAT,
    LEGACY_FILE,
    NAME,
    STATE_FILE,
    TrainState,
    checkpoint_name,
    rng_file,
)

MAX_STATE_BYTES = 64 << 20  # a state.json holds a config and a few numbers; more is not ours
_INT = (int,)
_NUMBER_OR_NULL = (int, float, type(None))
META_TYPES: dict[str, tuple[type, ...]] = {
    "format": _INT, "written_by": (str,), "state": (dict,), "scheduler": (dict,), "sampler": (dict,),
    "config": (dict,), "world_size": _INT, "tp_size": _INT, "pp_size": _INT, "dp_size": _INT, "optimizer": (dict,),
    "model": (dict,),
}
STATE_TYPES: dict[str, tuple[type, ...]] = {
    "step": _INT, "consumed_samples": _INT, "epoch": _INT, "val_loss": _NUMBER_OR_NULL,
    "best_val_loss": _NUMBER_OR_NULL, "validations_without_improvement": _INT, "run_dir": (str,), "extra": (dict,),
}
OPTIMIZER_TYPES: dict[str, tuple[type, ...]] = {"name": (str,), "sharded_over_data_parallel": (bool,)}
MODEL_TYPES: dict[str, tuple[type, ...]] = {"peft": (str, type(None)), "base_weights_saved": (bool,)}
LEGACY = ("written by an earlier sft (checkpoint format 1: per-rank torch.save files, resumable only at the TP, PP "
          f"and world size they were saved at); this sft resumes format {FORMAT} (dist/, resharded on load): "
          "resume it with the sft that wrote it, or move it away to start from the base model")


def verify(path: Path) -> str | None:
    """None when ``path`` is a complete checkpoint that loads safely; otherwise why not, one line."""
    path = Path(path)
    if not NAME.match(path.name):
        return "not a checkpoint directory name"
    if not path.is_dir():
        return "not a directory"
    meta, problem = read_meta(path)
    if problem:
        return problem
    expected = checkpoint_name(TrainState(**meta["state"]))
    if expected != path.name:
        return f"its name does not match {STATE_FILE}, which describes {expected}"
    for rank in range(meta["world_size"]):
        problem = _check_file(path / rng_file(rank), _rng_state)
        if problem:
            return f"{rng_file(rank)}: {problem}"
    return check_dist(path / DIST_DIR)


def check_dist(directory: Path) -> str | None:
    """``dist/`` through the restricted loader; holds model weights and optimizer state."""
    from sft_model.errors import NemoArchiveError
    from sft_model.nemo.untrusted import verify_weights

    if not directory.is_dir():
        return f"{DIST_DIR}/: missing"
    try:
        metadata = verify_weights(directory, DIST_DIR, label=DIST_DIR)
    except NemoArchiveError as exc:
        return str(exc)
    except OSError as exc:
        return f"{DIST_DIR}: unreadable ({_first_line(exc)})"
    try:
        config = json.loads((directory / "metadata.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"{DIST_DIR}/metadata.json is not valid JSON ({_first_line(exc)})"
    if not isinstance(config, dict) or config.get("sharded_backend") != "torch_dist":
        return f"{DIST_DIR}/metadata.json does not describe a torch_dist checkpoint"
    keys = list(metadata.state_dict_metadata)
    if not any(k.startswith("model") for k in keys):
        return f"{DIST_DIR}: holds no model weights"
    if not any(k.startswith("optimizer.state.") for k in keys):
        return f"{DIST_DIR}: holds no optimizer state"
    return None


def read_meta(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """``state.json`` of checkpoint ``path``, checked key by key; (meta, None) or (None, why not)."""
    file = path / STATE_FILE
    try:
        if file.stat().st_size > MAX_STATE_BYTES:
            return None, f"{STATE_FILE} is larger than {MAX_STATE_BYTES >> 20} MiB"
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, f"no {STATE_FILE} (an interrupted save, or not written by sft)"
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"{STATE_FILE} is unreadable ({_first_line(exc)})"
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"{STATE_FILE} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
    if isinstance(meta, dict) and "format" not in meta and ("tp_size" in meta or (path / LEGACY_FILE).is_file()):
        return None, LEGACY
    if isinstance(meta, dict) and isinstance(meta.get("format"), int) and meta["format"] != FORMAT:
        return None, (f"checkpoint format {meta['format']} (written by {meta.get('written_by', 'an unknown sft')!s:.60}); "
                      f"this sft resumes format {FORMAT}")
    problem = (_typed(meta, META_TYPES, "") or _typed(meta["state"], STATE_TYPES, "state.")
               or _typed(meta["optimizer"], OPTIMIZER_TYPES, "optimizer.") or _typed(meta["model"], MODEL_TYPES, "model."))
    if problem:
        return None, f"{STATE_FILE}: {problem}"
    tp, pp, dp, world = meta["tp_size"], meta["pp_size"], meta["dp_size"], meta["world_size"]
    if min(tp, pp, dp, world) < 1 or world != tp * pp * dp:
        return None, f"{STATE_FILE}: world_size {world} is not tp_size {tp} x pp_size {pp} x dp_size {dp}"
    ep = meta.setdefault("ep_size", 1)  # expert-parallel ranks are data-parallel ones
    if isinstance(ep, bool) or not isinstance(ep, int) or ep < 1 or dp % ep:
        return None, f"{STATE_FILE}: ep_size {ep!r:.60} does not divide dp_size {dp}"
    if min(meta["state"][k] for k in ("step", "consumed_samples", "epoch", "validations_without_improvement")) < 0:
        return None, f"{STATE_FILE}: a negative step, sample, epoch or validation count"
    return meta, None


def _typed(data: Any, types: dict[str, tuple[type, ...]], prefix: str) -> str | None:
    if not isinstance(data, dict):
        return f"{prefix.rstrip('.') or 'the file'} is not a JSON object"
    for key, allowed in types.items():
        if key not in data:
            return f"no key {prefix}{key}"
        value = data[key]
        if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, allowed):
            kinds = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
            return f"{prefix}{key} is {value!r:.60}, expected {kinds}"
    unknown = sorted(set(data) - set(types)) if prefix else []
    if unknown:
        return f"unknown key {prefix}{unknown[0]}"
    return None


def _check_file(file: Path, check: Callable[[Any], bool]) -> str | None:
    if not file.is_file():
        return "missing"
    try:
        # mmap: the pickle is read (and refused if it asks for anything but tensors and plain
        # containers); tensor bytes stay on disk, so verifying a large checkpoint reads little
        content = torch.load(file, weights_only=True, map_location="cpu", mmap=True)
    except pickle.UnpicklingError as exc:
        return f"refused by the weights-only loader, nothing in it was run ({_refusal(exc)})"
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        if "mmap can only be used" in str(exc):
            return "not a torch zip-format file (a raw pickle or legacy format)"
        if "central directory" in str(exc) or "zip archive" in str(exc):
            return "truncated or corrupt (not a complete torch zip archive)"
        return f"unreadable ({_first_line(exc)})"
    if not check(content):
        return f"holds a {type(content).__name__}, not what the checkpoint writer stores there"
    return None


def _rng_state(content: Any) -> bool:
    return isinstance(content, dict) and {"torch", "python", "tracker"} <= set(content)


def _refusal(exc: BaseException) -> str:
    """torch's several-paragraph message, down to what the file asked for."""
    text = str(exc)
    match = re.search(r"(Unsupported global: GLOBAL [\w.]+|unsupported GLOBAL [\w.]+|Unsupported operand \d+"
                      r"|Unsupported class [\w.]+)", text)
    return match.group(1) if match else _first_line(exc)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[0][:200] if lines else type(exc).__name__)
