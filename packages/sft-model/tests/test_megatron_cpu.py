"""Each CPU shim of ``sft_model.megatron_cpu``, exercised through the upstream code it serves."""

from __future__ import annotations

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


def test_tied_embedding_setup_keeps_the_weight_on_cpu(megatron):
    """Under PP>1 upstream calls ``weight.data.cuda()``; test_family_parallel runs a tied Qwen3 at PP=2
    through it. Here: inside the shimmed call ``.cuda()`` is the identity, outside it is torch's."""
    from megatron.core.models.common.language_module.language_module import LanguageModule

    seen = []
    megatron_cpu.uninstall()
    upstream = LanguageModule.setup_embeddings_and_output_layer
    try:
        LanguageModule.setup_embeddings_and_output_layer = lambda self: seen.append(torch.ones(2).cuda())
        megatron_cpu.install()
        LanguageModule.setup_embeddings_and_output_layer(object())
    finally:
        megatron_cpu.uninstall()
        LanguageModule.setup_embeddings_and_output_layer = upstream
        megatron_cpu.install()
    assert seen[0].device.type == "cpu"
    with pytest.raises((RuntimeError, AssertionError)):
        torch.ones(2).cuda()


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
