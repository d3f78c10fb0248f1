"""This process's place in the run: ranks and groups of tensor, pipeline and data parallelism."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Topology:
    rank: int
    world_size: int
    tp_rank: int
    tp_size: int
    pp_rank: int
    pp_size: int
    dp_rank: int
    dp_size: int
    dp_group: object
    device: torch.device
    ep_size: int = 1
    """Expert-parallel ranks (taken from the data-parallel ones)."""

    @property
    def is_last_stage(self) -> bool:
        return self.pp_rank == self.pp_size - 1

    @property
    def is_main(self) -> bool:
        """Global rank 0: logs, writes metrics and run-level files."""
        return self.rank == 0


def setup(tensor_parallel: int, pipeline_parallel: int, seed: int, expert_parallel: int = 1) -> Topology:
    """Join torchrun's world (or a one-process one) and initialise megatron-core's parallel state."""
    from megatron.core import parallel_state as ps
    from sft_core import SftError
    from sft_model.parallel import init_process_group, initialize

    init_process_group()
    dp = dist.get_world_size() // (tensor_parallel * pipeline_parallel)
    if expert_parallel > 1 and dp % expert_parallel:
        raise SftError(f"model.expert_model_parallel_size={expert_parallel} does not divide the data-parallel size "
                       f"{dp} ({dist.get_world_size()} processes / TP {tensor_parallel} / PP {pipeline_parallel})")
    initialize(tensor_parallel, pipeline_parallel, seed, expert_parallel)
    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    return Topology(
        rank=dist.get_rank(), world_size=dist.get_world_size(),
        tp_rank=ps.get_tensor_model_parallel_rank(), tp_size=ps.get_tensor_model_parallel_world_size(),
        pp_rank=ps.get_pipeline_model_parallel_rank(), pp_size=ps.get_pipeline_model_parallel_world_size(),
        dp_rank=ps.get_data_parallel_rank(), dp_size=ps.get_data_parallel_world_size(),
        dp_group=ps.get_data_parallel_group(), device=device, ep_size=ps.get_expert_model_parallel_world_size(),
    )


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def broadcast_object(value, src: int = 0):
    """``value`` from global rank ``src`` on every rank."""
    box = [value]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def _collective_device():
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any: one decision for all (a collective)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return flag
    value = torch.tensor([int(flag)], dtype=torch.int32, device=_collective_device())
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def first_failure(problem: str | None) -> str | None:
    """Whether any rank failed a step that can fail on some ranks only (a disk write): the lowest
    failing rank's message on every rank, or None. A collective: every rank must call it, so it
    also replaces a barrier, and no rank is left waiting for one that gave up."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return problem
    flag = torch.tensor([problem is not None], dtype=torch.int32, device=_collective_device())
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    if not flag.item():
        return None
    problems = [None] * dist.get_world_size()
    dist.all_gather_object(problems, problem)
    rank, first = next((r, p) for r, p in enumerate(problems) if p is not None)
    return first if rank == 0 else f"rank {rank}: {first}"


def trainable_parameter_count(model_chunks) -> int:
    """Trainable parameters of the whole model, counted on every rank alike.

    Tensor-parallel shards (``tensor_model_parallel`` set by megatron's parallel layers) are summed
    over the tensor-parallel group; replicated ones (norms) count once; pipeline stages are summed.
    """
    from megatron.core import parallel_state as ps

    sharded = replicated = 0
    for chunk in model_chunks:
        for param in chunk.parameters():
            if not param.requires_grad:
                continue
            if getattr(param, "tensor_model_parallel", False):
                sharded += param.numel()
            else:
                replicated += param.numel()
    counts = torch.tensor([sharded, 0], dtype=torch.int64)
    dist.all_reduce(counts, group=ps.get_tensor_model_parallel_group())
    counts[1] = replicated
    dist.all_reduce(counts, group=ps.get_pipeline_model_parallel_group())
    return int(counts.sum())
