"""Training checkpoints: complete or absent, the best k by validation loss plus the newest.

A checkpoint is a directory under ``run_dir/checkpoints``. Every rank writes its files into a
``.tmp-`` directory; when all have finished, rank 0 writes ``state.json`` last and renames the
directory into place. A crash at any moment leaves either the old set of complete checkpoints or
the new one, and ``.tmp-`` leftovers are removed on the next start. A write that fails on any rank
(a full disk) stops every rank with one line naming the file; the partial directory is removed.

Resume takes the newest checkpoint that verifies (``checkpoint_verify``); a damaged newer one is
reported in one line and skipped. Nothing in a checkpoint is unpickled outside the restricted
loaders. Pruning deletes only checkpoints that verify: a damaged directory is the user's evidence
and stays until they remove it (one re-saved under the same name is moved aside to
``<name>.unverified``).

Per directory (format 2, ``train_state.FORMAT``): ``dist/``, a megatron-core dist checkpoint of the
trainable model weights and the optimizer state (``sharded_state``), which loads at any TP, PP and
DP size (with the expert-parallel size it was saved at); ``rng_rank{r}.pt``, every rank's RNG states (restored when the layout is the same, so
that resuming there is bit-identical; after a layout change the seeded streams go on);
``state.json`` (step, consumed samples, epoch, validation loss, scheduler and sampler state, the
layout, the optimizer, the training config).
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from sft_core import SftError

from sft_trainer import dist_errors, sharded_state
from sft_trainer.checkpoint_verify import verify
from sft_trainer.distributed import Topology, broadcast_object, first_failure
from sft_trainer.train_state import (
    DIST_DIR,
    FORMAT,
    NAME,
    STATE_FILE,
    TMP_PREFIX,
    Contents,
    TrainState,
    checkpoint_name,
    checkpoint_step,
    rng_file,
)
from sft_trainer.write_errors import WriteFailed, as_write_failure, atomic_write_text

__all__ = ["CheckpointError", "CheckpointManager", "Contents", "TrainState", "checkpoint_dirs"]


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


def _save(obj: Any, path: Path) -> None:
    try:
        torch.save(obj, path)
    except (OSError, RuntimeError) as exc:
        raise as_write_failure(exc, path) from None


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"sft-trainer {version('sft-trainer')}"
    except PackageNotFoundError:
        return "sft-trainer (version unknown)"


class CheckpointManager:
    def __init__(self, directory: Path, topo: Topology, save_top_k: int, mode: str, config: dict,
                 contents: Contents):
        self.directory = directory
        self.config = config
        self.contents = contents
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
        self._settle(self._attempt(_save, _rng_state(), tmp / rng_file(self.topo.rank)), tmp, what)
        self._settle(self._write_dist(tmp / DIST_DIR, model_chunks, optimizer), tmp, what, shared=dist_errors.first_cause)
        topo = self.topo
        meta = {"format": FORMAT, "written_by": _version(), "state": asdict(state), "scheduler": scheduler_state,
                "sampler": sampler_state, "config": self.config, "world_size": topo.world_size, "tp_size": topo.tp_size,
                "pp_size": topo.pp_size, "dp_size": topo.dp_size, "ep_size": topo.ep_size, **self.contents.describe()}
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

    def _write_dist(self, directory: Path, model_chunks, optimizer) -> str | None:
        """Every rank's shards of model and optimizer (a collective: all ranks take part even when
        one fails; megatron's writers report failures to all)."""
        with dist_errors.captured_writer_errors() as capture:
            try:
                sharded_state.save(directory, model_chunks, optimizer)
            except OSError as exc:
                return str(as_write_failure(exc, directory))
            except BaseException as exc:  # torch's CheckpointException is a BaseException
                if isinstance(exc, KeyboardInterrupt | SystemExit):
                    raise
                if not dist_errors.is_checkpoint_failure(exc):
                    self._local_error = exc  # a bug: the other ranks stop, this one re-raises it
                return dist_errors.problem(exc, capture, directory)
        return None

    def _settle(self, problem: str | None, tmp: Path, what: str, shared=first_failure) -> None:
        failure = shared(problem)
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
            (tmp / DIST_DIR).mkdir(parents=True)
        except OSError as exc:
            raise as_write_failure(exc, tmp) from None

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
