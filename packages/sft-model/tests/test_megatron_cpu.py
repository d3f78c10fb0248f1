"""Each CPU shim of ``sft_model.megatron_cpu``, exercised through the upstream code it serves."""

from __future__ import annotations

import contextlib
import queue

import pytest
import torch
from sft_model import megatron_cpu


def test_every_listed_module_sees_the_cpu_torch(megatron):
    import importlib

    for name in megatron_cpu.CUDA_ASSUMING_MODULES:
        assert importlib.import_module(name).torch is megatron_cpu.CPU_TORCH, name
    t = megatron_cpu.CPU_TORCH.zeros([], dtype=torch.int, device="cuda")
    assert t.device.type == "cpu"
    assert megatron_cpu.CPU_TORCH.empty(3, device=megatron_cpu.CPU_TORCH.cuda.current_device()).device.type == "cpu"


def test_rotary_embedding_runs_on_cpu_and_needs_the_shim(megatron):
    from megatron.core.models.common.embeddings.rotary_pos_embedding import RotaryEmbedding

    rope = RotaryEmbedding(kv_channels=16, rotary_percent=1.0, use_cpu_initialization=True)
    assert rope.get_emb(8).shape == (8, 1, 1, 16)
    megatron_cpu.uninstall()
    try:
        with pytest.raises((RuntimeError, AssertionError)):  # upstream moves inv_freq to CUDA
            RotaryEmbedding(kv_channels=16, rotary_percent=1.0, use_cpu_initialization=True).get_emb(8)
    finally:
        megatron_cpu.install()


def test_rng_tracker_forks_the_model_parallel_state(megatron):
    from megatron.core import tensor_parallel

    megatron_cpu.model_parallel_manual_seed(123)
    tracker = tensor_parallel.get_cuda_rng_tracker()
    assert isinstance(tracker, megatron_cpu.CpuRNGStatesTracker)
    torch.manual_seed(0)
    outside = torch.get_rng_state()
    with tracker.fork():
        a = torch.rand(3)
    assert torch.equal(torch.get_rng_state(), outside)  # the default stream is untouched
    with tracker.fork():
        b = torch.rand(3)
    assert not torch.equal(a, b)  # the forked stream advanced
    megatron_cpu.model_parallel_manual_seed(123)
    with tensor_parallel.get_cuda_rng_tracker().fork():
        assert torch.equal(torch.rand(3), a)  # reproducible from the seed
    with pytest.raises(RuntimeError, match="not added"), tracker.fork("nope"):
        pass


def test_global_memory_buffer_allocates_on_cpu_and_reuses(megatron):
    from megatron.core import parallel_state as ps

    buf = ps.get_global_memory_buffer()
    x = buf.get_tensor((4, 8), torch.float32, "mpu")
    y = buf.get_tensor((2, 8), torch.float32, "mpu")
    assert x.device.type == "cpu" and x.data_ptr() == y.data_ptr()


def test_megatron_dot_product_attention_uses_the_cpu_buffer(megatron):
    """Upstream's own local attention (what SDPAttention replaces) also runs, and agrees with ours."""
    from megatron.core.transformer.dot_product_attention import DotProductAttention
    from megatron.core.transformer.enums import AttnMaskType
    from sft_model.attention import SDPAttention
    from sft_model.builder import transformer_config
    from sft_model.random_init import init_config

    cfg = transformer_config(init_config("llama", 90, num_query_groups=2))
    q, k, v = torch.randn(6, 2, 4, 16), torch.randn(6, 2, 2, 16), torch.randn(6, 2, 2, 16)
    mask = torch.ones(6, 6, dtype=torch.bool).tril().logical_not()[None, None].expand(2, 1, 6, 6)
    theirs = DotProductAttention(cfg, 1, AttnMaskType.causal, "self")(q, k, v, mask)
    ours = SDPAttention(cfg, 1, AttnMaskType.causal, "self")(q, k, v, None)
    assert torch.allclose(theirs, ours, atol=1e-5)


def test_checkpoint_writes_collect_results_in_process(megatron):
    from megatron.core.dist_checkpointing.strategies import filesystem_async

    assert isinstance(filesystem_async.get_write_results_queue(), queue.Queue)


def test_schedule_ddp_optimizer_and_grad_norm_run_on_cpu(megatron):
    """forward_backward_no_pipelining, megatron DDP, the optimizer step and grad-norm helpers."""
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig
    from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
    from megatron.core.pipeline_parallel import get_forward_backward_func
    from megatron.core.utils import local_multi_tensor_l2_norm
    from sft_model.builder import build_model
    from sft_model.random_init import init_config

    torch.manual_seed(0)
    cfg = init_config("llama", 90)
    model = build_model(cfg).module
    ddp = DistributedDataParallel(model.config, DistributedDataParallelConfig(), model)
    opt = get_megatron_optimizer(OptimizerConfig(optimizer="adam", lr=1e-3, bf16=False, fp16=False), [ddp])
    ids = torch.randint(0, 90, (2, 16))

    def step(batch, module):
        out = module(ids, torch.arange(16).expand(2, 16), None, labels=ids.roll(-1, 1))
        return out, lambda o: (o.sum() / o.numel(), {"loss": o.detach().mean()})

    before = model.decoder.final_layernorm.weight.detach().clone()
    ddp.zero_grad_buffer()
    opt.zero_grad()
    losses = get_forward_backward_func()(forward_step_func=step, data_iterator=iter([None]), model=[ddp],
                                         num_microbatches=1, seq_length=16, micro_batch_size=2, forward_only=False)
    ddp.finish_grad_sync()
    ok, grad_norm, _ = opt.step()
    assert ok and grad_norm > 0 and losses[0]["loss"] > 0
    assert not torch.equal(before, model.decoder.final_layernorm.weight)
    norm, _ = local_multi_tensor_l2_norm(None, None, [[torch.ones(4)]], False)
    assert norm.device.type == "cpu" and norm.item() == pytest.approx(2.0)


def test_static_inference_kv_cache_allocates_on_cpu_and_needs_the_shim(megatron):
    """Generation's KV cache (StaticInferenceContext) is allocated by Attention._allocate_memory."""
    from megatron.core.inference.contexts import StaticInferenceContext
    from sft_model.builder import build_model
    from sft_model.random_init import init_config

    torch.manual_seed(0)
    model = build_model(init_config("llama", 90)).module.eval()
    ids = torch.randint(0, 90, (2, 6))
    with torch.no_grad():
        context = StaticInferenceContext(2, 8)
        model(ids, torch.arange(6).expand(2, 6), None, inference_context=context)
        keys, _ = context.key_value_memory_dict[1]
        assert keys.device.type == "cpu" and keys.shape[:2] == (8, 2)
        megatron_cpu.uninstall()
        try:
            with pytest.raises((RuntimeError, AssertionError)):  # upstream allocates on current_device()
                model(ids, torch.arange(6).expand(2, 6), None, inference_context=StaticInferenceContext(2, 8))
        finally:
            megatron_cpu.install()


def _llama(**settings):
    from sft_model.builder import build_model
    from sft_model.random_init import init_config

    torch.manual_seed(0)
    return build_model(init_config("llama", 90, precision="32").replace(**settings)).module


def test_full_recomputation_runs_on_cpu_and_needs_the_rng_shims(megatron):
    """CheckpointFunction saves and restores the CUDA RNG state around the recomputed forward."""
    model = _llama(activations_checkpoint_granularity="full", activations_checkpoint_method="uniform",
                   activations_checkpoint_num_layers=1).train()
    ids = torch.randint(0, 90, (2, 8))

    def backward():
        model(ids, torch.arange(8).expand(2, 8), None, labels=ids).sum().backward()

    backward()
    assert all(p.grad is not None for p in model.parameters())
    megatron_cpu.uninstall()
    try:
        with pytest.raises((RuntimeError, AssertionError)):  # upstream reads torch.cuda's generator
            backward()
    finally:
        megatron_cpu.install()


def _ddp(model):
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig

    return DistributedDataParallel(model.config, DistributedDataParallelConfig(use_distributed_optimizer=True), model)


def _optimizer(ddp):
    from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer

    config = OptimizerConfig(optimizer="adam", lr=1e-2, bf16=False, fp16=False, use_distributed_optimizer=True)
    return get_megatron_optimizer(config, [ddp])


def _distributed(model):
    ddp = _ddp(model)
    return ddp, _optimizer(ddp)


@contextlib.contextmanager
def _upstream(name: str):
    """``DistributedOptimizer.<name>`` without its shim, for the duration."""
    from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer

    shim = DistributedOptimizer.__dict__[name]
    setattr(DistributedOptimizer, name, shim.__wrapped__)
    try:
        yield
    finally:
        setattr(DistributedOptimizer, name, shim)


def _step(ddp, optimizer) -> float:
    ids = torch.randint(0, 90, (2, 8), generator=torch.Generator().manual_seed(3))
    ddp.zero_grad_buffer()
    optimizer.zero_grad()
    loss = ddp(ids, torch.arange(8).expand(2, 8), None, labels=ids.roll(-1, 1)).mean()
    loss.backward()
    ddp.finish_grad_sync()
    optimizer.step()
    return loss.item()


def test_distributed_optimizer_builds_on_cpu_and_needs_the_shim(megatron):
    """DistributedOptimizer accepts only parameters whose type() names a CUDA tensor."""
    ddp, optimizer = _distributed(_llama())
    assert _step(ddp, optimizer) > 0
    assert all("type" not in p.__dict__ for p in ddp.parameters())  # the override is gone again
    ddp = _ddp(_llama())
    with _upstream("__init__"), pytest.raises(TypeError, match=r"torch\.cuda\.FloatTensor"):
        _optimizer(ddp)


def test_distributed_optimizer_checkpoint_resumes_exactly_and_needs_the_shims(megatron, tmp_path):
    """A fully_reshardable save loaded into a fresh optimizer (torch's Adam inside): the next two
    steps equal the uninterrupted ones. Upstream fails on the fresh optimizer's missing step, then
    on the checkpoint's missing per-parameter step, and shares one step tensor among parameters."""
    from megatron.core import dist_checkpointing

    metadata = {"distrib_optim_sharding_type": "fully_reshardable",
                "distrib_optim_fully_reshardable_mem_efficient": True}

    def state(ddp, optimizer, loading):
        model = ddp.module.sharded_state_dict(prefix="model.")
        return {**model, "optimizer": optimizer.sharded_state_dict(model, is_loading=loading, metadata=metadata)}

    def resume(ddp, optimizer):
        loaded = dist_checkpointing.load(state(ddp, optimizer, True), str(tmp_path / "ckpt"))
        optimizer_state = loaded.pop("optimizer")
        ddp.module.load_state_dict({k.removeprefix("model."): v for k, v in loaded.items()}, strict=False)
        optimizer.load_state_dict(optimizer_state)

    def steps(optimizer):
        return [s["step"] for inner in optimizer.chained_optimizers for s in inner.optimizer.state.values()]

    ddp, optimizer = _distributed(_llama())
    _step(ddp, optimizer)
    (tmp_path / "ckpt").mkdir()
    dist_checkpointing.save(state(ddp, optimizer, False), str(tmp_path / "ckpt"))
    want = [_step(ddp, optimizer), _step(ddp, optimizer)]

    ddp, optimizer = _distributed(_llama(init_method_std=0.5))  # other weights: the checkpoint must replace them
    resume(ddp, optimizer)
    assert len({id(s) for s in steps(optimizer)}) == len(steps(optimizer)) > 1
    assert {float(s) for s in steps(optimizer)} == {1.0}
    assert [_step(ddp, optimizer), _step(ddp, optimizer)] == want

    for name, error in (("sharded_state_dict", AssertionError), ("_set_main_param_and_optimizer_states", KeyError)):
        ddp, optimizer = _distributed(_llama())
        with _upstream(name), pytest.raises(error):
            resume(ddp, optimizer)
    ddp, optimizer = _distributed(_llama())
    with _upstream("load_state_dict"):
        resume(ddp, optimizer)
    assert len({id(s) for s in steps(optimizer)}) == 1  # upstream: one tensor shared by every parameter ...
    assert [_step(ddp, optimizer), _step(ddp, optimizer)] != want  # ... so the resumed run drifts
