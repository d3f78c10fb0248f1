"""Training checkpoints: complete or absent, the best k by validation loss plus the newest.

A checkpoint is a directory under ``run_dir/checkpoints``. Every rank writes its files into a
``.tmp-`` directory; when all have finished, rank 0 writes ``state.json`` last and renames the
directory into place. A crash at any moment leaves either the old set of complete checkpoints or
the new one, and ``.tmp-`` leftovers are removed on the next start. Files are loaded with
``weights_only=True``: nothing in a checkpoint is executed.

Per directory: ``state.json`` (step, consumed samples, epoch, validation loss, sampler state, the
training config),
``model_tp{t}_pp{p}.pt`` and ``optim_tp{t}_pp{p}.pt`` (written by data-parallel rank 0: they are
equal on every data-parallel rank), ``rng_rank{r}.pt`` (every rank's RNG states).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from sft_trainer.distributed import Topology, barrier, broadcast_object

STATE_FILE = "state.json"
TMP_PREFIX = ".tmp-"
NAME = re.compile(r"^megatron_gpt_sft--step=(\d+)-consumed_samples=(\d+)-epoch=(\d+)(?:-val_loss=([0-9.]+|nan))?$")


@dataclass
class TrainState:
    """Where training is; saved in every checkpoint and passed to the event hooks."""

    step: int = 0
    consumed_samples: int = 0
    epoch: int = 0
    val_loss: float | None = None
    best_val_loss: float | None = None
    validations_without_improvement: int = 0
    run_dir: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def checkpoint_name(state: TrainState) -> str:
    name = f"megatron_gpt_sft--step={state.step:06d}-consumed_samples={state.consumed_samples}-epoch={state.epoch}"
    if state.val_loss is not None:
        name += f"-val_loss={state.val_loss:.6f}"
    return name


def complete_checkpoints(directory: Path) -> list[Path]:
    """Complete checkpoints, oldest step first."""
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if p.is_dir() and NAME.match(p.name) and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(NAME.match(p.name).group(1)))


def _rng_state() -> dict[str, Any]:
    from megatron.core import tensor_parallel

    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "tracker": tensor_parallel.get_cuda_rng_tracker().get_states()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    from megatron.core import tensor_parallel

    torch.set_rng_state(state["torch"])
    random.setstate(_tuples(state["python"]))
    tensor_parallel.get_cuda_rng_tracker().set_states(state["tracker"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list | tuple) else value


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".partial")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


def frozen_parameters(chunk) -> set[str]:
    # state_dict keys, not named_parameters names: a DDP wrapper's state_dict drops its "module." prefix
    return {k for k, v in chunk.state_dict(keep_vars=True).items()
            if isinstance(v, torch.nn.Parameter) and not v.requires_grad}


def trainable_state(chunk) -> dict[str, Any]:
    """The chunk's state without frozen parameters: with PEFT, the adapters (megabytes) and not the
    base weights, which resume reloads from the base .nemo unchanged."""
    frozen = frozen_parameters(chunk)
    return {k: v for k, v in chunk.state_dict().items() if k not in frozen}


def load_trainable_state(chunk, state: dict[str, Any]) -> None:
    # megatron's DDP.load_state_dict returns nothing: load into the wrapped module (same keys)
    chunk = getattr(chunk, "module", chunk)
    result = chunk.load_state_dict(state, strict=False)
    missing = set(result.missing_keys) - frozen_parameters(chunk)
    if missing or result.unexpected_keys:
        from sft_core import SftError

        raise SftError(f"checkpoint does not match the model: missing {sorted(missing)[:3]}, "
                       f"unexpected {sorted(result.unexpected_keys)[:3]}")


class CheckpointManager:
    def __init__(self, directory: Path, topo: Topology, save_top_k: int, mode: str, config: dict | None = None):
        self.directory = directory
        self.config = config or {}
        self.topo = topo
        self.save_top_k = save_top_k
        self.mode = mode
        if topo.is_main:
            directory.mkdir(parents=True, exist_ok=True)
            for leftover in directory.glob(f"{TMP_PREFIX}*"):
                shutil.rmtree(leftover, ignore_errors=True)
        barrier()

    def _suffix(self) -> str:
        return f"tp{self.topo.tp_rank:02d}_pp{self.topo.pp_rank:03d}"

    def save(self, state: TrainState, model_chunks, optimizer, scheduler_state: dict, sampler_state: dict) -> Path:
        name = checkpoint_name(state)
        final = self.directory / name
        tmp = self.directory / f"{TMP_PREFIX}{name}"
        if self.topo.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        barrier()
        if self.topo.writes_model_state:
            torch.save([trainable_state(chunk) for chunk in model_chunks], tmp / f"model_{self._suffix()}.pt")
            torch.save(optimizer.state_dict(), tmp / f"optim_{self._suffix()}.pt")
        torch.save(_rng_state(), tmp / f"rng_rank{self.topo.rank:05d}.pt")
        barrier()
        if self.topo.is_main:
            meta = {"state": asdict(state), "scheduler": scheduler_state, "sampler": sampler_state, "config": self.config,
                    "world_size": self.topo.world_size, "tp_size": self.topo.tp_size, "pp_size": self.topo.pp_size}
            _atomic_write_text(tmp / STATE_FILE, json.dumps(meta, indent=2))
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)
            self._prune()
        barrier()
        return final

    def _prune(self) -> None:
        """Keep the newest checkpoint and the best ``save_top_k`` by validation loss."""
        checkpoints = complete_checkpoints(self.directory)
        if not checkpoints:
            return
        keep = {checkpoints[-1]}
        scored = [(float(NAME.match(p.name).group(4)), p) for p in checkpoints
                  if NAME.match(p.name).group(4) not in (None, "nan")]
        scored.sort(key=lambda item: item[0], reverse=self.mode == "max")
        keep |= {p for _, p in scored[: max(self.save_top_k, 0)]}
        for path in checkpoints:
            if path not in keep:
                shutil.rmtree(path, ignore_errors=True)

    def latest(self) -> Path | None:
        found = complete_checkpoints(self.directory) if self.topo.is_main else None
        path = broadcast_object(str(found[-1]) if found else None)
        return Path(path) if path else None

    def load(self, path: Path, model_chunks, optimizer) -> dict[str, Any]:
        """Restore model, optimizer and RNG states; returns the saved metadata."""
        meta = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
        if (meta["tp_size"], meta["pp_size"], meta["world_size"]) != (
                self.topo.tp_size, self.topo.pp_size, self.topo.world_size):
            from sft_core import SftError

            raise SftError(f"{path} was saved with TP={meta['tp_size']} PP={meta['pp_size']} on "
                           f"{meta['world_size']} processes; resume with the same layout")
        models = torch.load(path / f"model_{self._suffix()}.pt", weights_only=True, map_location="cpu")
        for chunk, state in zip(model_chunks, models, strict=True):
            load_trainable_state(chunk, state)
        optimizer.load_state_dict(torch.load(path / f"optim_{self._suffix()}.pt", weights_only=True,
                                             map_location="cpu"))
        _set_rng_state(torch.load(path / f"rng_rank{self.topo.rank:05d}.pt", weights_only=True))
        return meta
