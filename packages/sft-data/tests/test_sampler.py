"""Global-batch sampler: determinism, per-epoch reshuffle, exact resume, DP partition, drop_last."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sft_data.errors import SftError
from sft_data.sampler import GlobalBatchSampler


def run(sampler, batches):
    """The next ``batches`` batches, crossing epoch boundaries as a training loop does."""
    out = []
    while len(out) < batches:
        for batch in sampler:
            out.append(batch)
            if len(out) == batches:
                break
    return out


def test_same_seed_same_batches_other_seed_other_batches():
    a = run(GlobalBatchSampler(100, 8, seed=5), 30)
    assert a == run(GlobalBatchSampler(100, 8, seed=5), 30)
    assert a != run(GlobalBatchSampler(100, 8, seed=6), 30)


def test_each_epoch_is_a_fresh_permutation_without_the_tail():
    sampler = GlobalBatchSampler(103, 10, seed=1)
    assert (sampler.batches_per_epoch, sampler.samples_per_epoch, len(sampler)) == (10, 100, 10)
    epochs = [list(itertools.chain.from_iterable(sampler)) for _ in range(3)]
    for items in epochs:
        assert len(items) == 100 == len(set(items)) and set(items) <= set(range(103))
    assert epochs[0] != epochs[1] != epochs[2]
    assert sampler.state_dict() == {"epoch": 3, "consumed_samples": 300}


def test_unshuffled_order():
    sampler = GlobalBatchSampler(7, 3, shuffle=False)
    assert list(sampler) == [[0, 1, 2], [3, 4, 5]]


@given(
    size=st.integers(4, 60), gbs=st.sampled_from([1, 2, 4]), dp=st.sampled_from([1, 2, 4]),
    seed=st.integers(0, 1000), stop=st.integers(0, 40),
)
@settings(max_examples=100, deadline=None)
def test_resume_equals_uninterrupted(size, gbs, dp, seed, stop):
    gbs *= dp
    if size < gbs:
        return
    for rank in range(dp):
        full = run(GlobalBatchSampler(size, gbs, seed=seed, dp_rank=rank, dp_size=dp), 45)
        first = GlobalBatchSampler(size, gbs, seed=seed, dp_rank=rank, dp_size=dp)
        before = run(first, stop)
        state = dict(first.state_dict())  # what a checkpoint would store
        assert state["consumed_samples"] == stop * gbs
        resumed = GlobalBatchSampler(size, gbs, seed=seed, dp_rank=rank, dp_size=dp)
        resumed.load_state_dict(state)
        assert before + run(resumed, 45 - stop) == full


def test_state_for_a_trainers_count_matches_the_live_state():
    sampler = GlobalBatchSampler(50, 5, seed=2)
    run(sampler, 13)
    assert sampler.state_for(65) == sampler.state_dict() == {"epoch": 1, "consumed_samples": 65}


@pytest.mark.parametrize("dp", [1, 2, 3, 6])
def test_ranks_partition_each_global_batch(dp):
    samplers = [GlobalBatchSampler(40, 12, seed=9, dp_rank=r, dp_size=dp) for r in range(dp)]
    per_rank = [run(s, 7) for s in samplers]
    reference = GlobalBatchSampler(40, 12, seed=9)
    for step in range(7):
        shares = [per_rank[r][step] for r in range(dp)]
        assert all(len(share) == 12 // dp for share in shares)
        epoch, index = divmod(step, reference.batches_per_epoch)
        assert list(itertools.chain.from_iterable(shares)) == reference.global_batch(epoch, index).tolist()


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((10, 4), {"dp_size": 3}, "not divisible by the data-parallel size 3"),
        ((10, 4), {"dp_size": 2, "dp_rank": 2}, "rank 2 is outside 0..1"),
        ((3, 4), {}, "fewer than one global batch"),
        ((10, 0), {}, "must be positive"),
    ],
)
def test_bad_configuration(args, kwargs, message):
    with pytest.raises(SftError, match=message):
        GlobalBatchSampler(*args, **kwargs)


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"epoch": 0, "consumed_samples": 6}, "not a whole number of global batches of 4"),
        ({"epoch": 0, "consumed_samples": 8}, "says epoch 0 but 8 consumed samples is epoch 1"),
        ({"consumed_samples": 4}, "must have integer epoch and consumed_samples"),
    ],
)
def test_bad_state_is_refused(state, message):
    sampler = GlobalBatchSampler(10, 4)
    with pytest.raises(SftError, match=message):
        sampler.load_state_dict(state)
