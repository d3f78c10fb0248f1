"""Every workaround that lets megatron-core 0.19.2 run on a CPU-only machine, in one place.

megatron-core assumes CUDA in a few places. Each shim names the upstream code it stands in for,
has a test in ``tests/test_megatron_cpu.py`` (the optimizer's in ``test_megatron_cpu_optim.py``),
and can be deleted when upstream stops assuming a GPU. ``install()`` is the one entry point: it
applies them only when CUDA is not available; on a GPU only the write queue and, without Apex or
Transformer Engine (the distributed optimizer then wraps torch's Adam, as on every CPU), the
distributed-optimizer checkpoint fixes are active. The optimizer's shims live in
``megatron_cpu_optim``, installed from here. The shims touch private names, which is why
megatron-core is pinned to one version.
"""

from __future__ import annotations

import contextlib
import importlib
import types

import torch

from sft_model.megatron_cpu_optim import clip_grad_by_total_norm_cpu, install_methods, uninstall_methods

_installed = False
_saved_torch: dict[str, object] = {}

# Modules whose ``torch.cuda.current_device()`` / ``device="cuda"`` / ``torch.cuda.synchronize()``
# calls must land on the CPU. Each line names the upstream functions that need it.
CUDA_ASSUMING_MODULES: tuple[str, ...] = (
    # RotaryEmbedding.get_emb moves inv_freq to torch.cuda.current_device() on first use.
    "megatron.core.models.common.embeddings.rotary_pos_embedding",
    # p2p_communication._communicate_shapes/_communicate allocate on current_device() and synchronize().
    "megatron.core.pipeline_parallel.p2p_communication",
    # schedules.forward_backward_* count tokens in torch.zeros([], device="cuda").
    "megatron.core.pipeline_parallel.schedules",
    # _ParamAndGradBuffer allocates param/grad buffers on current_device(); start_grad_sync uses
    # torch.cuda.current_stream().
    "megatron.core.distributed.param_and_grad_buffer",
    # DistributedDataParallel creates a torch.cuda.Stream for overlapped grad reduction.
    "megatron.core.distributed.distributed_data_parallel",
    # MegatronOptimizer/FP32Optimizer keep found_inf/_scale on device='cuda'.
    "megatron.core.optimizer.optimizer",
    # clip_grads.get_grad_norm_fp32/clip_grad_by_total_norm_fp32 use device='cuda' buffers.
    "megatron.core.optimizer.clip_grads",
    # DistributedOptimizer allocates shard buffers on current_device().
    "megatron.core.optimizer.distrib_optimizer",
    # mappings._gather_along_first_dim & co (sequence parallel) allocate on current_device().
    "megatron.core.tensor_parallel.mappings",
    # LinearWithGradAccumulationAndAsyncCommunication gathers sequence-parallel input on current_device().
    "megatron.core.tensor_parallel.layers",
    # state_dict_saver.save_state_dict_async_finalize all-reduces a failure flag on current_device().
    "megatron.core.dist_checkpointing.strategies.state_dict_saver",
    # utils.local_multi_tensor_l2_norm (the optimizer's grad norm without Apex/TE) returns its
    # result in torch.tensor(..., device="cuda").
    "megatron.core.utils",
    # dist_checkpointing's async file writer calls torch.cuda.synchronize() before preloading.
    "megatron.core.dist_checkpointing.strategies.filesystem_async",
    # Attention._allocate_memory puts the static inference KV cache (StaticInferenceContext) on
    # current_device(); generation (sft_model.generate) uses that cache.
    "megatron.core.transformer.attention",
    # TopKRouter.gating moves a CPU router weight to current_device(); its aux-loss helpers allocate
    # token counts there.
    "megatron.core.transformer.moe.router",
)


class _NoStream:
    """Stands in for ``torch.cuda.Stream``: CPU work is already ordered, so waits are no-ops."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def wait_stream(self, other) -> None:
        pass

    def synchronize(self) -> None:
        pass

    def record_event(self, event=None):
        return event


class _CpuCuda(types.SimpleNamespace):
    """``torch.cuda`` as the shimmed modules see it: the current device is the CPU."""

    def __getattr__(self, name):
        return getattr(torch.cuda, name)

    @staticmethod
    def current_device() -> torch.device:
        return torch.device("cpu")

    @staticmethod
    def synchronize(device=None) -> None:
        pass

    @staticmethod
    def empty_cache() -> None:
        pass

    @staticmethod
    def current_stream(device=None) -> _NoStream:
        return _NoStream()

    Stream = _NoStream

    @staticmethod
    def stream(stream) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()


def _cpu_device(device):
    if device == "cuda" or (isinstance(device, torch.device) and device.type == "cuda"):
        return torch.device("cpu")
    if isinstance(device, int):  # a CUDA ordinal from current_device() in the caller
        return torch.device("cpu")
    return device


def _on_cpu(factory):
    def wrapper(*args, **kwargs):
        if "device" in kwargs:
            kwargs["device"] = _cpu_device(kwargs["device"])
        return factory(*args, **kwargs)

    wrapper.__name__ = factory.__name__
    return wrapper


class _CpuTorch(types.ModuleType):
    """The ``torch`` module seen by the shimmed modules: identical except that CUDA means the CPU."""

    _FACTORIES = ("zeros", "ones", "empty", "full", "tensor", "arange", "empty_like", "zeros_like", "randn")

    def __init__(self) -> None:
        super().__init__("torch")
        self.cuda = _CpuCuda()
        for name in self._FACTORIES:
            setattr(self, name, _on_cpu(getattr(torch, name)))

    def __getattr__(self, name):
        return getattr(torch, name)


CPU_TORCH = _CpuTorch()


class CpuRNGStatesTracker:
    """Stands in for ``tensor_parallel.random.CudaRNGStatesTracker`` using the CPU generator.

    Upstream ``add``/``fork`` read and write ``torch.cuda`` RNG states; dropout inside
    tensor-parallel regions forks the "model-parallel-rng" state, so the CPU needs the same
    bookkeeping with ``torch.get_rng_state``/``torch.set_rng_state``.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.states_: dict[str, torch.Tensor] = {}
        self.seeds_: set[int] = set()
        self._is_initialized = False

    def is_initialized(self) -> bool:
        return self._is_initialized

    def get_states(self) -> dict[str, torch.Tensor]:
        return dict(self.states_)

    def set_states(self, states: dict[str, torch.Tensor]) -> None:
        self._is_initialized = True
        self.states_ = states

    def add(self, name: str, seed: int) -> None:
        if seed in self.seeds_ or name in self.states_:
            raise RuntimeError(f"rng state {name!r} / seed {seed} already exists")
        self._is_initialized = True
        self.seeds_.add(seed)
        orig = torch.get_rng_state()
        torch.manual_seed(seed)
        self.states_[name] = torch.get_rng_state()
        torch.set_rng_state(orig)

    @contextlib.contextmanager
    def fork(self, name: str = "model-parallel-rng"):
        if name not in self.states_:
            raise RuntimeError(f"rng state {name!r} is not added")
        orig = torch.get_rng_state()
        torch.set_rng_state(self.states_[name])
        try:
            yield
        finally:
            self.states_[name] = torch.get_rng_state()
            torch.set_rng_state(orig)


def model_parallel_manual_seed(seed: int) -> None:
    """Stands in for ``tensor_parallel.model_parallel_cuda_manual_seed`` (same seeds, CPU generator)."""
    from megatron.core import parallel_state as ps
    from megatron.core.tensor_parallel import random as mp_random

    tracker = CpuRNGStatesTracker()
    tp_rank = ps.get_tensor_model_parallel_rank()
    torch.manual_seed(seed)
    tracker.add(mp_random._DATA_PARALLEL_RNG_TRACKER_NAME, seed)
    tracker.add(mp_random._MODEL_PARALLEL_RNG_TRACKER_NAME, seed + 2718 + tp_rank)
    tracker.add(mp_random._EXPERT_PARALLEL_RNG_TRACKER_NAME, seed + 1024 + 100 * ps.get_expert_model_parallel_rank())
    mp_random._CUDA_RNG_STATE_TRACKER = tracker
    mp_random._CUDA_RNG_STATE_TRACKER_INITIALIZED = True


def install_memory_buffer() -> None:
    """Stands in for ``utils.GlobalMemoryBuffer`` (``parallel_state._GLOBAL_MEMORY_BUFFER``).

    Upstream allocates its reusable buffers on ``torch.cuda.current_device()``; megatron's own
    DotProductAttention and the sequence-parallel gathers take tensors from it.
    """
    from megatron.core import parallel_state as ps
    from megatron.core.utils import GlobalMemoryBuffer

    class CpuGlobalMemoryBuffer(GlobalMemoryBuffer):
        def get_tensor(self, tensor_shape, dtype, name, mem_alloc_context=None):
            required = 1
            for dim in tensor_shape:
                required *= dim
            key = (name, dtype)
            buf = self.buffer.get(key)
            if buf is None or buf.numel() < required:
                buf = self.buffer[key] = torch.empty(required, dtype=dtype, device="cpu", requires_grad=False)
            return buf[:required].view(*tensor_shape)

    ps._GLOBAL_MEMORY_BUFFER = CpuGlobalMemoryBuffer()


def install_inprocess_write_queue() -> None:
    """Stands in for ``dist_checkpointing.strategies.filesystem_async.get_write_results_queue``.

    Upstream creates a ``multiprocessing.Manager().Queue()`` with the spawn method just to collect
    write results of a *synchronous* save; the spawned manager re-imports ``__main__``, so a script
    without a ``__main__`` guard dies (EOFError) on its first save. Our saves are synchronous and
    write from threads of this process, so a thread-safe ``queue.Queue`` does the same job.
    Needed on every device, not only the CPU.
    """
    import queue

    from megatron.core.dist_checkpointing.strategies import filesystem_async

    if filesystem_async._results_queue is None:
        filesystem_async._results_queue = queue.Queue()


def cuda_rng_state_cpu(*args, **kwargs) -> torch.Tensor:
    """Stands in for ``tensor_parallel.random._get_cuda_rng_state``.

    Activation recomputation (``CheckpointFunction``) saves the CPU state, the CUDA state and the
    tracker's states before a forward and restores them for the recomputed one; on the CPU the
    CUDA part holds nothing (the tracker's states are CPU generator states already).
    """
    return torch.empty(0, dtype=torch.uint8)


def set_cuda_rng_state_cpu(new_state, *args, **kwargs) -> None:
    """Stands in for ``tensor_parallel.random._set_cuda_rng_state``: nothing to restore on the CPU."""


# (module, name, replacement): functions looked up by name at call time, replaced on the CPU.
# clip_grad_by_total_norm_fp32 was imported by name into optimizer.optimizer (MegatronOptimizer.step).
FUNCTION_SHIMS: tuple[tuple[str, str, object], ...] = (
    ("megatron.core.optimizer.clip_grads", "clip_grad_by_total_norm_fp32", clip_grad_by_total_norm_cpu),
    ("megatron.core.optimizer.optimizer", "clip_grad_by_total_norm_fp32", clip_grad_by_total_norm_cpu),
    ("megatron.core.tensor_parallel.random", "_get_cuda_rng_state", cuda_rng_state_cpu),
    ("megatron.core.tensor_parallel.random", "_set_cuda_rng_state", set_cuda_rng_state_cpu),
)
_saved_functions: dict[tuple[str, str], object] = {}


def _install_functions() -> None:
    for module_name, name, replacement in FUNCTION_SHIMS:
        module = importlib.import_module(module_name)
        _saved_functions[(module_name, name)] = getattr(module, name)
        setattr(module, name, replacement)


def _uninstall_functions() -> None:
    for (module_name, name), original in _saved_functions.items():
        setattr(importlib.import_module(module_name), name, original)
    _saved_functions.clear()


_saved_setup: list = []


def _install_tied_embedding_setup() -> None:
    """Stands in for ``LanguageModule.setup_embeddings_and_output_layer`` under pipeline parallelism
    with tied embeddings: upstream moves the shared weight with ``weight.data.cuda()`` before the
    all-reduce that copies it from the first stage to the last. On the CPU the weight stays where it
    is (``Tensor.cuda`` is the identity for the duration of that one call)."""
    from megatron.core.models.common.language_module.language_module import LanguageModule

    original = LanguageModule.setup_embeddings_and_output_layer
    _saved_setup.append(original)

    def setup_embeddings_and_output_layer(self):
        cuda = torch.Tensor.cuda
        torch.Tensor.cuda = lambda tensor, *args, **kwargs: tensor
        try:
            return original(self)
        finally:
            torch.Tensor.cuda = cuda

    LanguageModule.setup_embeddings_and_output_layer = setup_embeddings_and_output_layer


def _uninstall_tied_embedding_setup() -> None:
    from megatron.core.models.common.language_module.language_module import LanguageModule

    if _saved_setup:
        LanguageModule.setup_embeddings_and_output_layer = _saved_setup.pop()


def install() -> bool:
    """Apply every shim (the CPU ones only when CUDA is unavailable); returns whether CPU shims are active.

    Idempotent.
    """
    global _installed
    install_inprocess_write_queue()
    if torch.cuda.is_available():
        install_methods(cpu=False)
        return False
    if _installed:
        return True
    for name in CUDA_ASSUMING_MODULES:
        module = importlib.import_module(name)
        if module.__dict__.get("torch") is torch:
            _saved_torch[name] = torch
            module.torch = CPU_TORCH
    _install_functions()
    install_methods(cpu=True)
    _install_tied_embedding_setup()
    _installed = True
    return True


def uninstall() -> None:
    """Undo the module-level shims (tests use it to show each one is needed)."""
    global _installed
    for name, original in _saved_torch.items():
        importlib.import_module(name).torch = original
    _saved_torch.clear()
    _uninstall_functions()
    uninstall_methods()
    _uninstall_tied_embedding_setup()
    _installed = False
