"""The loss is the global token mean: gradient accumulation and packing do not change it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sft_data.packing.algorithms import BUILTIN_ALGORITHMS
from sft_data.packing.plan import pack_samples
from sft_data.store import PreparedDataset, write_prepared
from sft_data.types import TokenizedSample

VOCAB = 300


@pytest.fixture(scope="module")
def world():
    from sft_trainer.distributed import setup

    return setup(1, 1, seed=1234)


@pytest.fixture(scope="module")
def model(world):
    from sft_model.builder import build_model
    from sft_model.config import ModelConfig
    from sft_trainer.optim import wrap_ddp

    torch.manual_seed(0)
    cfg = ModelConfig(num_layers=2, hidden_size=64, num_attention_heads=4, num_query_groups=2, ffn_hidden_size=128,
                      encoder_seq_length=128, vocab_size=VOCAB, make_vocab_size_divisible_by=64, precision="32")
    return wrap_ddp(build_model(cfg, dtype=torch.float32).chunks, use_distributed_optimizer=False)


class NoOptimizer:
    def zero_grad(self):
        pass


def samples(n: int, seed: int = 0) -> list[TokenizedSample]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        length = int(rng.integers(6, 30))
        ids = rng.integers(5, VOCAB, size=length).tolist()
        start = int(rng.integers(1, length - 1))
        mask = [False] * start + [True] * (length - start)
        out.append(TokenizedSample(ids, mask))
    return out


def source(path, gbs, mbs, world):
    from sft_trainer.data import BatchPlan, BatchSource

    return BatchSource(PreparedDataset(path), BatchPlan(gbs, mbs, world.dp_size), seed=0, dp_rank=0, shuffle=False,
                       pad_id=0, fixed_length=None)


def grads_and_loss(model, microbatches, world):
    from sft_trainer.step import train_step

    result, _ = train_step(model, NoOptimizer(), microbatches, world, use_te=False)
    grads = {n: p.main_grad.detach().clone() for n, p in model[0].named_parameters()}
    return result, grads


def assert_grads_close(a, b, tol):
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= tol, f"max |Δgrad| = {worst}"
    assert any(float(g.abs().max()) > 0 for g in a.values())


def test_gradient_accumulation_invariance(model, world, tmp_path):
    write_prepared(tmp_path / "d", samples(8), bins=None, pack_size=None, header={})
    one, g_one = grads_and_loss(model, source(tmp_path / "d", 8, 8, world).batch_at(0), world)
    four, g_four = grads_and_loss(model, source(tmp_path / "d", 8, 2, world).batch_at(0), world)
    assert one.trained_tokens == four.trained_tokens > 0
    assert abs(one.loss - four.loss) <= 1e-6
    assert_grads_close(g_one, g_four, 1e-6)


def test_packed_equals_unpacked(model, world, tmp_path):
    data = samples(8, seed=1)
    write_prepared(tmp_path / "plain", data, bins=None, pack_size=None, header={})
    ffd = next(a for a in BUILTIN_ALGORITHMS if a.name == "first_fit_decreasing")
    bins, stats = pack_samples(data, 96, ffd)
    write_prepared(tmp_path / "packed", data, bins=bins, pack_size=96, header={})
    n_bins = stats["bins"]
    assert n_bins < 8
    plain, g_plain = grads_and_loss(model, source(tmp_path / "plain", 8, 4, world).batch_at(0), world)
    packed, g_packed = grads_and_loss(model, source(tmp_path / "packed", n_bins, 1, world).batch_at(0), world)
    assert plain.trained_tokens == packed.trained_tokens
    assert abs(plain.loss - packed.loss) <= 1e-5
    assert_grads_close(g_plain, g_packed, 1e-5)
