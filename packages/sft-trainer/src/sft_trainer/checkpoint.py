"""Training checkpoints: complete or absent, the best k by validation loss plus the newest.

A checkpoint is a directory under ``run_dir/checkpoints``. Every rank writes its files into a
``.tmp-`` directory; when all have finished, rank 0 writes ``state.json`` last and renames the
directory into place. A crash at any moment leaves either the old set of complete checkpoints or
the new one, and ``.tmp-`` leftovers are removed on the next start. A write that fails on any rank
(a full disk) stops every rank with one line naming the file; the partial directory is removed.

Resume takes the newest checkpoint that verifies (``checkpoint_verify``); a damaged newer one is
reported in one line and skipped. Files are loaded with ``weights_only=True``: nothing in a
checkpoint is executed. Pruning deletes only checkpoints that verify: a damaged directory is the
user's evidence and stays until they remove it (one re-saved under the same name is moved aside to
``<name>.unverified``).

Per directory: ``state.json`` (step, consumed samples, epoch, validation loss, sampler state, the
training config),
``model_tp{t}_pp{p}.pt`` and ``optim_tp{t}_pp{p}.pt`` (written by data-parallel rank 0: they are
equal on every data-parallel rank), ``rng_rank{r}.pt`` (every rank's RNG states).
"""

from __future__ import annotations

import json
import pickle
import random
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from sft_core import SftError

from sft_trainer.checkpoint_verify import verify
from sft_trainer.distributed import Topology, broadcast_object, first_failure
from sft_trainer.train_state import (
    NAME,
    STATE_FILE,
    TMP_PREFIX,
    TrainState,
    checkpoint_name,
    checkpoint_step,
    model_file,
    optim_file,
    rng_file,
)
from sft_trainer.write_errors import WriteFailed, as_write_failure, atomic_write_text

__all__ = ["CheckpointError", "CheckpointManager", "TrainState", "checkpoint_dirs", "load_checkpoint"]


class CheckpointError(SftError):
    """A checkpoint could not be saved or restored, or none of the existing ones can be resumed."""


def checkpoint_dirs(directory: Path) -> list[Path]:
    """Directories named like checkpoints, oldest step first, whether they verify or not."""
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if checkpoint_step(p.name) is not None and p.is_dir()]
    return sorted(found, key=lambda p: (checkpoint_step(p.name), p.name))


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


def _save(obj: Any, path: Path) -> None:
    try:
        torch.save(obj, path)
    except (OSError, RuntimeError) as exc:
        raise as_write_failure(exc, path) from None


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
        raise SftError(f"checkpoint does not match the model: missing {sorted(missing)[:3]}, "
                       f"unexpected {sorted(result.unexpected_keys)[:3]}")


class CheckpointManager:
    def __init__(self, directory: Path, topo: Topology, save_top_k: int, mode: str, config: dict | None = None):
        self.directory = directory
        self.config = config or {}
        self.topo = topo
        self.save_top_k = save_top_k
        self.mode = mode
        self._local_error: BaseException | None = None
        problem = None
        if topo.is_main:
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                problem = str(as_write_failure(exc, directory))
            for leftover in directory.glob(f"{TMP_PREFIX}*"):
                shutil.rmtree(leftover, ignore_errors=True)
        failure = first_failure(problem)
        if failure:
            raise CheckpointError(f"cannot create the checkpoint directory: {failure}")

    def save(self, state: TrainState, model_chunks, optimizer, scheduler_state: dict, sampler_state: dict) -> Path:
        """Every rank calls this. Returns the checkpoint's directory; raises ``CheckpointError`` on
        every rank when a write failed on any, with the partial directory removed."""
        name = checkpoint_name(state)
        final = self.directory / name
        tmp = self.directory / f"{TMP_PREFIX}{name}"
        what = f"checkpoint at step {state.step} not saved (the earlier checkpoints are intact)"
        self._settle(self._attempt(self._fresh, tmp) if self.topo.is_main else None, tmp, what)
        self._settle(self._attempt(self._write_shards, tmp, model_chunks, optimizer), tmp, what)
        meta = {"state": asdict(state), "scheduler": scheduler_state, "sampler": sampler_state, "config": self.config,
                "world_size": self.topo.world_size, "tp_size": self.topo.tp_size, "pp_size": self.topo.pp_size,
                "ep_size": self.topo.ep_size}
        self._settle(self._attempt(self._publish, tmp, final, meta) if self.topo.is_main else None, tmp, what)
        return final

    def _attempt(self, step, *args) -> str | None:
        """Run one rank's part of a save; a failure becomes a message for ``_settle`` to share."""
        try:
            step(*args)
        except WriteFailed as exc:
            return str(exc)
        except Exception as exc:  # a bug, not a full disk: the other ranks stop, this one re-raises it
            self._local_error = exc
            return f"{type(exc).__name__}: {exc}".splitlines()[0]
        return None

    def _settle(self, problem: str | None, tmp: Path, what: str) -> None:
        failure = first_failure(problem)
        if failure is None:
            return
        if self.topo.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        local, self._local_error = self._local_error, None
        if local is not None:
            raise local
        raise CheckpointError(f"{what}: {failure}")

    @staticmethod
    def _fresh(tmp: Path) -> None:
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir(parents=True)
        except OSError as exc:
            raise as_write_failure(exc, tmp) from None

    def _write_shards(self, tmp: Path, model_chunks, optimizer) -> None:
        t, p, e = self.topo.tp_rank, self.topo.pp_rank, self.topo.ep_file_rank
        if self.topo.writes_model_state:
            _save([trainable_state(chunk) for chunk in model_chunks], tmp / model_file(t, p, e))
            _save(optimizer.state_dict(), tmp / optim_file(t, p, e))
        _save(_rng_state(), tmp / rng_file(self.topo.rank))

    def _publish(self, tmp: Path, final: Path, meta: dict[str, Any]) -> None:
        atomic_write_text(tmp / STATE_FILE, json.dumps(meta, indent=2))
        if final.exists():
            problem = verify(final)
            if problem is None:  # the same step of an earlier run of this directory: replaced
                shutil.rmtree(final)
            else:
                aside = final.with_name(final.name + ".unverified")
                n = 1
                while aside.exists():
                    n += 1
                    aside = final.with_name(f"{final.name}.unverified-{n}")
                final.rename(aside)
                print(f"warning: {final} does not verify ({problem}); kept as {aside.name}")
        try:
            tmp.rename(final)
        except OSError as exc:
            raise as_write_failure(exc, final) from None
        self._prune()

    def _prune(self) -> None:
        """Keep the newest checkpoint and the best ``save_top_k`` by validation loss (-1: all).
        Only checkpoints that verify are candidates; a damaged directory is never deleted."""
        if self.save_top_k == -1:
            return
        checkpoints = [p for p in checkpoint_dirs(self.directory) if verify(p) is None]
        if not checkpoints:
            return
        keep = {checkpoints[-1]}
        scored = [(float(NAME.match(p.name).group(4)), p) for p in checkpoints
                  if NAME.match(p.name).group(4) not in (None, "nan")]
        scored.sort(key=lambda item: item[0], reverse=self.mode == "max")
        keep |= {p for _, p in scored[: self.save_top_k]}
        for path in checkpoints:
            if path not in keep:
                shutil.rmtree(path, ignore_errors=True)

    def latest(self) -> Path | None:
        """The newest checkpoint that verifies, chosen by rank 0 and the same on every rank."""
        path, error = broadcast_object(self._choose() if self.topo.is_main else None)
        if error:
            raise CheckpointError(error)
        return Path(path) if path else None

    def _choose(self) -> tuple[str | None, str | None]:
        candidates = checkpoint_dirs(self.directory)
        for path in reversed(candidates):
            problem = verify(path)
            if problem is None:
                return str(path), None
            print(f"warning: skipping checkpoint {path}: {problem}")
        if candidates:
            return None, (f"none of the {len(candidates)} checkpoints in {self.directory} can be resumed from "
                          f"(see the warnings above); move them away to start from the beginning")
        return None, None

    def load(self, path: Path, model_chunks, optimizer) -> dict[str, Any]:
        return load_checkpoint(path, self.topo, model_chunks, optimizer)


def load_checkpoint(path: Path, topo: Topology, model_chunks, optimizer) -> dict[str, Any]:
    """Restore model, optimizer and RNG states from a verified checkpoint (every rank calls this);
    returns the saved metadata."""
    meta = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
    ep = meta.get("ep_size", 1)
    if (meta["tp_size"], meta["pp_size"], ep, meta["world_size"]) != (
            topo.tp_size, topo.pp_size, topo.ep_size, topo.world_size):
        raise CheckpointError(f"{path} was saved with TP={meta['tp_size']} PP={meta['pp_size']} EP={ep} on "
                              f"{meta['world_size']} processes; resume with the same layout")
    t, p, e = topo.tp_rank, topo.pp_rank, topo.ep_file_rank
    problem = None
    try:
        models = torch.load(path / model_file(t, p, e), weights_only=True, map_location="cpu")
        for chunk, state in zip(model_chunks, models, strict=True):
            load_trainable_state(chunk, state)
        optimizer.load_state_dict(torch.load(path / optim_file(t, p, e), weights_only=True, map_location="cpu"))
        _set_rng_state(torch.load(path / rng_file(topo.rank), weights_only=True))
    except SftError as exc:
        problem = f"{path}: {exc}"
    except (KeyError, ValueError, TypeError, IndexError, RuntimeError, OSError, pickle.UnpicklingError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        problem = f"{path}: cannot restore this rank's state ({type(exc).__name__}: {first})"
    failure = first_failure(problem)
    if failure:
        raise CheckpointError(failure)
    return meta
