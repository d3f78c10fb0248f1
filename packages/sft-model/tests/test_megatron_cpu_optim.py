"""Each optimizer shim of ``sft_model.megatron_cpu_optim`` (installed by ``megatron_cpu.install()``),
exercised through the upstream code it serves: megatron-core's distributed optimizer on the CPU and
its checkpoint with torch's Adam inside. (Gradient clipping: test_megatron_cpu's optimizer step.)"""

from __future__ import annotations

import contextlib

import pytest
import torch


def _llama(**settings):
    from sft_model.builder import build_model
    from sft_model.random_init import init_config

    torch.manual_seed(0)
    return build_model(init_config("llama", 90, precision="32").replace(**settings)).module


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
