"""Process groups and model-parallel state: one process with no launcher, or torchrun's environment.

CPU runs use gloo, GPU runs NCCL. ``ensure_parallel_state()`` is what the Python API calls when the
caller set nothing up (a one-process TP=1/PP=1 world on 127.0.0.1).
"""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist

from sft_model import megatron_cpu


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_process_group() -> None:
    """Join torchrun's world when its variables are set, else start a one-process world."""
    if dist.is_initialized():
        return
    if "RANK" not in os.environ:
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
        os.environ["RANK"], os.environ["WORLD_SIZE"], os.environ["LOCAL_RANK"] = "0", "1", "0"
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend)


def initialize(tensor_parallel: int = 1, pipeline_parallel: int = 1, seed: int = 1234, expert_parallel: int = 1) -> None:
    """Process group, megatron-core's parallel state (TP×PP, DP = the rest; experts split over
    ``expert_parallel`` of the data-parallel ranks), RNG states and CPU shims."""
    from megatron.core import parallel_state as ps
    from megatron.core import tensor_parallel as mp

    init_process_group()
    world = dist.get_world_size()
    if world % (tensor_parallel * pipeline_parallel):
        raise ValueError(f"world size {world} is not a multiple of TP×PP = {tensor_parallel * pipeline_parallel}")
    if (world // (tensor_parallel * pipeline_parallel)) % expert_parallel:
        raise ValueError(f"data-parallel size {world // (tensor_parallel * pipeline_parallel)} is not a multiple of "
                         f"expert parallel size {expert_parallel}")
    cpu = megatron_cpu.install()
    if ps.model_parallel_is_initialized():
        if (ps.get_tensor_model_parallel_world_size(), ps.get_pipeline_model_parallel_world_size(),
                ps.get_expert_model_parallel_world_size()) != (tensor_parallel, pipeline_parallel, expert_parallel):
            raise ValueError("model parallel state is already initialised with other TP/PP/EP sizes")
        return
    ps.initialize_model_parallel(tensor_parallel, pipeline_parallel, expert_model_parallel_size=expert_parallel)
    if cpu:
        megatron_cpu.install_memory_buffer()
        megatron_cpu.model_parallel_manual_seed(seed)
    else:
        mp.model_parallel_cuda_manual_seed(seed)


def ensure_parallel_state() -> None:
    """A one-process TP=1/PP=1 state unless the caller already made one."""
    from megatron.core import parallel_state as ps

    if not (dist.is_initialized() and ps.model_parallel_is_initialized()):
        initialize(1, 1)
    else:
        megatron_cpu.install()


def parallel_sizes() -> tuple[int, int]:
    from megatron.core import parallel_state as ps

    return ps.get_tensor_model_parallel_world_size(), ps.get_pipeline_model_parallel_world_size()


def destroy_model_parallel_only() -> None:
    """Drop megatron's groups but keep the process group, to re-initialise with other TP/PP sizes."""
    from megatron.core import parallel_state as ps
    from megatron.core.transformer.moe.moe_logging import destroy_moe_metrics_tracker

    ps.destroy_model_parallel()
    destroy_moe_metrics_tracker()  # its entries remember the destroyed groups


def destroy() -> None:
    """Tear down model-parallel state and the process group (tests switching TP/PP)."""
    from megatron.core import parallel_state as ps

    ps.destroy_model_parallel()
    if dist.is_initialized():
        dist.destroy_process_group()
