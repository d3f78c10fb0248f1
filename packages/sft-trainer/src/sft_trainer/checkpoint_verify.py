"""``verify(path)``: is a training checkpoint directory complete and safe to resume from?

Resume and pruning trust only checkpoints that verify, so a truncated, tampered or foreign
directory is reported and skipped (never loaded, never deleted). A checkpoint verifies when:

- its name is a checkpoint's name and ``state.json`` is one JSON object with every key, each of
  the right type, and the name agrees with it (step, consumed samples, epoch, validation loss);
- every file the saved topology (world size, TP, PP, EP) needs exists;
- every ``.pt`` file loads with ``weights_only=True`` (a pickled call is refused, never run) and
  holds what the writer puts there.

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
    NAME,
    STATE_FILE,
    TrainState,
    checkpoint_name,
    ep_ranks,
    model_file,
    optim_file,
    rng_file,
)

MAX_STATE_BYTES = 64 << 20  # a state.json holds a config and a few numbers; more is not ours
_INT = (int,)
_NUMBER_OR_NULL = (int, float, type(None))
META_TYPES: dict[str, tuple[type, ...]] = {
    "state": (dict,), "scheduler": (dict,), "sampler": (dict,), "config": (dict,),
    "world_size": _INT, "tp_size": _INT, "pp_size": _INT,
}
STATE_TYPES: dict[str, tuple[type, ...]] = {
    "step": _INT, "consumed_samples": _INT, "epoch": _INT, "val_loss": _NUMBER_OR_NULL,
    "best_val_loss": _NUMBER_OR_NULL, "validations_without_improvement": _INT, "run_dir": (str,), "extra": (dict,),
}


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
    tp, pp, world = meta["tp_size"], meta["pp_size"], meta["world_size"]
    eps = ep_ranks(meta.get("ep_size", 1))
    files = [(model_file(t, p, e), _model_state) for t in range(tp) for p in range(pp) for e in eps]
    files += [(optim_file(t, p, e), _optim_state) for t in range(tp) for p in range(pp) for e in eps]
    files += [(rng_file(r), _rng_state) for r in range(world)]
    for name, check in files:
        problem = _check_file(path / name, check)
        if problem:
            return f"{name}: {problem}"
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
    problem = _typed(meta, META_TYPES, "") or _typed(meta["state"], STATE_TYPES, "state.")
    if problem:
        return None, f"{STATE_FILE}: {problem}"
    tp, pp, world = meta["tp_size"], meta["pp_size"], meta["world_size"]
    if min(tp, pp, world) < 1 or world % (tp * pp):
        return None, f"{STATE_FILE}: world_size {world} is not a multiple of tp_size {tp} x pp_size {pp}"
    ep = meta.setdefault("ep_size", 1)  # absent in checkpoints written before expert parallelism
    if isinstance(ep, bool) or not isinstance(ep, int) or ep < 1 or (world // (tp * pp)) % ep:
        return None, f"{STATE_FILE}: ep_size {ep!r} does not divide the data-parallel size {world // (tp * pp)}"
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
        if isinstance(value, bool) or not isinstance(value, allowed):
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


def _model_state(content: Any) -> bool:
    """One state dict per model chunk."""
    return isinstance(content, list) and all(
        isinstance(chunk, dict) and all(isinstance(k, str) for k in chunk) for chunk in content)


def _optim_state(content: Any) -> bool:
    """One optimizer's state dict, or (megatron's ChainedOptimizer: dense and expert parameters) a list."""
    return isinstance(content, dict) or (isinstance(content, list) and all(isinstance(c, dict) for c in content))


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
