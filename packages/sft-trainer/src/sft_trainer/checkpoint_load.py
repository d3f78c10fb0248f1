"""Restoring a training checkpoint at this run's layout: ``dist/`` is resharded to its TP, PP and
DP sizes by megatron-core (the expert-parallel size must be the saved one); RNG states come back
only at the layout they were saved at (each rank's own streams), so resuming there is
bit-identical; elsewhere the seeded streams go on."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import torch
from sft_core import SftError

from sft_trainer import dist_errors, sharded_state
from sft_trainer.checkpoint import CheckpointError
from sft_trainer.checkpoint_verify import check_dist
from sft_trainer.distributed import Topology, first_failure
from sft_trainer.train_state import DIST_DIR, STATE_FILE, Contents, rng_file


def _set_rng_state(state: dict[str, Any]) -> None:
    from megatron.core import tensor_parallel

    torch.set_rng_state(state["torch"])
    random.setstate(_tuples(state["python"]))
    tensor_parallel.get_cuda_rng_tracker().set_states(state["tracker"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list | tuple) else value


def same_layout(meta: dict[str, Any], topo: Topology) -> bool:
    """Every rank holds what the same rank held when saving (its RNG streams are its own again)."""
    return (meta["tp_size"], meta["pp_size"], meta.get("ep_size", 1), meta["world_size"]) == (
        topo.tp_size, topo.pp_size, topo.ep_size, topo.world_size)


def _check_contents(path: Path, meta: dict[str, Any], contents: Contents, topo: Topology) -> None:
    saved_opt, saved_peft, saved_ep = meta["optimizer"], meta["model"]["peft"], meta.get("ep_size", 1)
    if saved_ep != topo.ep_size:  # see sharded_state: megatron's optimizer state has another structure
        raise CheckpointError(f"{path} was saved with model.expert_model_parallel_size={saved_ep}; this run uses "
                              f"{topo.ep_size}, and the optimizer state does not reshard across expert-parallel "
                              f"sizes: resume with model.expert_model_parallel_size={saved_ep}")
    if saved_opt["sharded_over_data_parallel"] != contents.distributed_optimizer:
        kind = "distributed" if saved_opt["sharded_over_data_parallel"] else "replicated"
        raise CheckpointError(f"{path} holds {kind} optimizer state (model.optim.name={saved_opt['name']}), which "
                              f"model.optim.name={contents.optimizer} cannot read; resume with "
                              f"model.optim.name={saved_opt['name']}")
    if saved_peft != contents.peft:
        raise CheckpointError(f"{path} was saved with model.peft.peft_scheme={saved_peft or 'none'}; this run "
                              f"uses {contents.peft or 'none'}: resume with the same PEFT settings")


def load_checkpoint(path: Path, topo: Topology, model_chunks, optimizer, contents: Contents) -> dict[str, Any]:
    """Restore model, optimizer and (at the same layout) RNG states from a verified checkpoint,
    resharding to this run's TP/PP/DP (every rank calls this); returns the saved metadata."""
    meta = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
    _check_contents(path, meta, contents, topo)
    problem = None
    with dist_errors.captured_writer_errors():
        try:
            # rank 0 verified the checkpoint; each rank checks the copy it reads (a node's own disk)
            # before megatron unpickles anything in it
            unsafe = check_dist(path / DIST_DIR)
            if unsafe:
                raise CheckpointError(unsafe)
            sharded_state.load(path / DIST_DIR, model_chunks, optimizer)
            if same_layout(meta, topo):
                _set_rng_state(torch.load(path / rng_file(topo.rank), weights_only=True))
        except SftError as exc:
            problem = f"{path}: {exc}"
        except (Exception, BaseException) as exc:  # also torch's CheckpointException, a BaseException
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            problem = f"{path}: cannot restore this rank's state ({_first_line(exc)})"
    failure = first_failure(problem)
    if failure:
        raise CheckpointError(failure)
    return meta


def _first_line(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
