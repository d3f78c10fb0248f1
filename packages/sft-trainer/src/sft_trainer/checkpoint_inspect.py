"""``describe_checkpoint``: what a training checkpoint directory holds, for ``sft inspect``.

Read without building a model: ``state.json`` and the dist checkpoint's metadata (through the
allow-listed unpickler, never anything else). A checkpoint that does not verify is still
described as far as it can be read, with the reason it would not be resumed from.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from sft_trainer.checkpoint_verify import LEGACY, verify
from sft_trainer.train_state import DIST_DIR, FORMAT, STATE_FILE, rng_file


def is_checkpoint_dir(path: Path) -> bool:
    """A directory that looks like a training checkpoint (its ``state.json``), not a .nemo."""
    return path.is_dir() and (path / STATE_FILE).is_file() and not (path / "model_config.yaml").exists()


def _dist_contents(directory: Path) -> dict[str, Any]:
    import torch
    from sft_model.errors import NemoArchiveError
    from sft_model.nemo.untrusted import read_metadata

    try:
        meta = read_metadata((directory / ".metadata").read_bytes(), directory)
    except (OSError, NemoArchiveError):
        return {}
    model = optimizer = 0
    parameters = optimizer_bytes = 0
    for key, entry in meta.state_dict_metadata.items():
        size = getattr(entry, "size", None)
        if size is None:
            continue
        if key.startswith("optimizer.state."):
            optimizer += 1
            optimizer_bytes += math.prod(size) * torch.empty((), dtype=entry.properties.dtype).element_size()
        elif key.startswith("model"):
            model += 1
            parameters += math.prod(size)
    return {"model": {"tensors": model, "parameters": parameters},
            "optimizer": {"state_tensors": optimizer, "state_bytes": optimizer_bytes}}


def describe_checkpoint(path: str | Path) -> dict[str, Any]:
    """Step, layout, contents and whether it would be resumed from (``problem`` says why not)."""
    path = Path(path)
    problem = verify(path)
    try:
        meta = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        meta = None
    if not isinstance(meta, dict):
        meta = {}
    state = meta.get("state") if isinstance(meta.get("state"), dict) else {}
    legacy = problem == LEGACY
    contents = {} if legacy else _dist_contents(path / DIST_DIR)
    world = meta.get("world_size")
    return {
        "path": str(path),
        "kind": "training checkpoint",
        "format": 1 if legacy else meta.get("format", FORMAT),
        "written_by": meta.get("written_by", "an earlier sft (format 1)" if legacy else None),
        "verifies": problem is None,
        "problem": problem,
        "step": state.get("step"),
        "consumed_samples": state.get("consumed_samples"),
        "epoch": state.get("epoch"),
        "val_loss": state.get("val_loss"),
        "topology": {"world_size": world, "tensor_model_parallel_size": meta.get("tp_size"),
                     "pipeline_model_parallel_size": meta.get("pp_size"),
                     "data_parallel_size": meta.get("dp_size", world // (meta["tp_size"] * meta["pp_size"])
                                                    if legacy and world else None),
                     "expert_model_parallel_size": meta.get("ep_size", 1)},
        "model": {**(meta.get("model") if isinstance(meta.get("model"), dict) else {}), **contents.get("model", {})},
        "optimizer": {**(meta.get("optimizer") if isinstance(meta.get("optimizer"), dict)
                         else {"sharded_over_data_parallel": False} if legacy else {}),
                      **contents.get("optimizer", {})},
        "scheduler": meta.get("scheduler"),
        "sampler": meta.get("sampler"),
        "rng_files": sum((path / rng_file(r)).is_file() for r in range(world)) if isinstance(world, int) else 0,
    }


def describe_lines(info: dict[str, Any]) -> list[str]:
    """``sft inspect``'s text for a checkpoint."""
    topo, model, opt = info["topology"], info["model"], info["optimizer"]
    loss = "" if info["val_loss"] is None else f", validation loss {info['val_loss']:.4f}"
    lines = [info["path"],
             f"  step          {info['step']} ({info['consumed_samples']} samples, epoch {info['epoch']}{loss})",
             f"  layout        TP={topo['tensor_model_parallel_size']} PP={topo['pipeline_model_parallel_size']} "
             f"DP={topo['data_parallel_size']}{_ep(topo)} ({topo['world_size']} processes); "
             + ("resumes only at this layout" if info["format"] == 1 else "resumes at any layout"
                if topo["expert_model_parallel_size"] == 1 else "resumes at any TP, PP and DP with this EP")]
    if "tensors" in model:
        what = "trainable (PEFT adapters: " + str(model.get("peft")) + ")" if model.get("peft") else "all"
        lines.append(f"  model         {model['tensors']} tensors, {model['parameters']:,} parameters ({what})")
    if opt:
        kind = "sharded over data-parallel ranks" if opt.get("sharded_over_data_parallel") else "replicated"
        size = f", {opt['state_tensors']} state tensors ({opt['state_bytes'] / 2**20:.1f} MiB)" if "state_tensors" in opt \
            else ""
        lines.append(f"  optimizer     {opt.get('name', 'adam')}, {kind}{size}")
    lines.append(f"  format        {info['format']}, written by {info['written_by'] or 'unknown'}; "
                 f"{info['rng_files']} per-rank RNG files")
    lines.append("  resumable     yes" if info["verifies"] else f"  resumable     no: {info['problem']}")
    return lines


def _ep(topo: dict[str, Any]) -> str:
    ep = topo["expert_model_parallel_size"]
    return "" if ep == 1 else f" EP={ep}"
