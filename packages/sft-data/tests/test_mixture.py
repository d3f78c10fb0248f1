"""Weighted mixing of datasets: exact per-epoch proportions, fair draws inside each source, a new
draw each epoch, determinism and exact resume."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sft_data.errors import SftError
from sft_data.mixture import MixedBins, MixtureSampler, check_weights, epoch_counts, interleave
from sft_data.store import write_prepared
from sft_data.types import TokenizedSample


def run(sampler, batches):
    """The next ``batches`` batches, crossing epoch boundaries as a training loop does."""
    out = []
    while len(out) < batches:
        for batch in sampler:
            out.append(batch)
            if len(out) == batches:
                break
    return out


def test_epoch_counts_are_the_largest_remainder_rounding():
    # exact shares 50.5, 30.3, 20.2: one item left over goes to the largest remainder
    assert epoch_counts([0.5, 0.3, 0.2], 101).tolist() == [51, 30, 20]
    assert epoch_counts([1 / 3] * 3, 100).tolist() == [34, 33, 33]  # a tie: the earlier source
    assert epoch_counts([0.0, 1.0], 7).tolist() == [0, 7]


@given(weights=st.lists(st.integers(0, 20), min_size=1, max_size=5).filter(any), total=st.integers(0, 500))
@settings(max_examples=200, deadline=None)
def test_epoch_counts_sum_to_the_epoch_and_round_each_share(weights, total):
    p = np.asarray(weights, dtype=np.float64) / sum(weights)
    counts = epoch_counts(p, total)
    assert counts.sum() == total
    assert np.all((counts == np.floor(p * total)) | (counts == np.ceil(p * total)))


def test_an_epoch_holds_each_source_exactly_its_share():
    sampler = MixtureSampler([30, 70], [0.8, 0.2], 10, seed=1)
    assert sampler.samples_per_epoch == 100  # an epoch is as long as both datasets together
    for epoch in range(3):
        items = np.concatenate([sampler.global_batch(epoch, b) for b in range(sampler.batches_per_epoch)])
        assert np.bincount(sampler.source_of(items), minlength=2).tolist() == [80, 20]


def test_draws_inside_a_source_are_fair_over_epochs():
    sampler = MixtureSampler([30, 70], [0.8, 0.2], 10, seed=4)
    epochs = [sampler.permutation(e) for e in range(7)]
    up = [e[e < 30] for e in epochs]  # 80 draws of 30 samples per epoch
    down = [e[e >= 30] - 30 for e in epochs]  # 20 draws of 70 samples per epoch
    for e in range(1, 8):
        # after e epochs, every sample of a source has been drawn floor or ceil of (draws / size) times
        for draws, size in ((up, 30), (down, 70)):
            seen = np.bincount(np.concatenate(draws[:e]), minlength=size)
            total = sum(len(d) for d in draws[:e])
            assert set(seen.tolist()) <= {total // size, -(-total // size)}, (e, size)
    for counts in (np.bincount(u, minlength=30) for u in up):  # inside one epoch: 2.67 on average
        assert set(counts.tolist()) <= {2, 3, 4}
    assert len(set(down[0].tolist())) == 20 and down[0].tolist() != down[1].tolist()  # other samples next epoch


def test_unshuffled_sources_are_interleaved_evenly():
    sampler = MixtureSampler([10, 10, 10], [0.5, 0.3, 0.2], 5, seed=0, shuffle=False)
    sources = sampler.source_of(sampler.permutation(0))
    # every prefix holds each source within 2 of its share: a source's items sit at the fractional
    # positions (k + 1/2) / c_i, which the sort keeps within half an item, and each other source
    # can shift a position by at most half an item more
    n = np.arange(1, 31)
    for i, count in enumerate(sampler.counts):
        assert np.max(np.abs(np.cumsum(sources == i) - count * n / 30)) < 2
    # keys (k + 1/2) / c for counts 15, 9, 6: .033 .056 .083 .1 .167 .167 .233 .25 .278 .3 (ties: lower source)
    assert sources[:10].tolist() == [0, 1, 2, 0, 0, 1, 0, 2, 1, 0]
    # unshuffled, each source is read in its own order
    items = sampler.permutation(0)
    assert items[sources == 0].tolist() == list(range(10)) + list(range(5))
    assert interleave([0, 2]).tolist() == [1, 1]


def test_same_seed_same_batches_other_seed_other_batches():
    def batches(seed):
        return run(MixtureSampler([12, 40, 9], [0.2, 0.5, 0.3], 6, seed=seed), 40)

    assert batches(5) == batches(5)
    assert batches(5) != batches(6)


def test_each_epoch_is_a_new_draw():
    sampler = MixtureSampler([12, 40], [0.7, 0.3], 4, seed=2)
    epochs = [list(itertools.chain.from_iterable(sampler)) for _ in range(3)]
    assert epochs[0] != epochs[1] != epochs[2]
    assert sampler.state_dict() == {"epoch": 3, "consumed_samples": 156, "sizes": [12, 40], "weights": [0.7, 0.3]}


@given(
    sizes=st.lists(st.integers(1, 30), min_size=2, max_size=4), gbs=st.sampled_from([1, 2, 4]),
    dp=st.sampled_from([1, 2]), seed=st.integers(0, 1000), stop=st.integers(0, 30), data=st.data(),
)
@settings(max_examples=60, deadline=None)
def test_resume_equals_uninterrupted(sizes, gbs, dp, seed, stop, data):
    gbs *= dp
    if sum(sizes) < gbs:
        return
    raw = data.draw(st.lists(st.integers(1, 10), min_size=len(sizes), max_size=len(sizes)))
    weights = [w / sum(raw) for w in raw]
    weights[-1] = 1.0 - sum(weights[:-1])
    for rank in range(dp):
        def make():
            return MixtureSampler(sizes, weights, gbs, seed=seed, dp_rank=rank, dp_size=dp)  # noqa: B023

        full = run(make(), 35)
        first = make()
        before = run(first, stop)
        state = dict(first.state_dict())  # what a checkpoint would store
        resumed = make()
        resumed.load_state_dict(state)
        assert before + run(resumed, 35 - stop) == full


def test_a_state_saved_for_another_mixture_is_refused():
    state = MixtureSampler([10, 20], [0.5, 0.5], 5).state_for(10)
    with pytest.raises(SftError, match=r"saved for datasets of sizes \[10, 20\] mixed with \[0.5, 0.5\]"):
        MixtureSampler([10, 20], [0.4, 0.6], 5).load_state_dict(state)


@pytest.mark.parametrize(("weights", "message"), [
    ([0.5, 0.4], r"sum to 1, got \[0.5, 0.4\] \(sum 0.9\)"),
    ([1.0], r"1 sampling probabilities for 2 datasets"),
    ([1.5, -0.5], r"within \[0, 1\]"),
    ([float("nan"), 1.0], r"within \[0, 1\]"),
])
def test_bad_weights_are_refused(weights, message):
    with pytest.raises(SftError, match=message):
        check_weights(weights, 2)
    assert check_weights([0.7, 0.2, 0.1], 3) == [0.7, 0.2, 0.1]  # sums to 0.9999999999999999


def _dataset(directory, first_token, count, pack_size=None):
    samples = [TokenizedSample([first_token + i, 1, 2], [False, True, True]) for i in range(count)]
    write_prepared(directory, samples, bins=[[i] for i in range(count)] if pack_size else None,
                   pack_size=pack_size, header={})
    return directory


def test_mixed_bins_read_each_flat_index_from_its_source(tmp_path):
    bins = MixedBins([_dataset(tmp_path / "a", 100, 3), _dataset(tmp_path / "b", 200, 2)])
    assert len(bins) == 5 and bins.sizes == [3, 2] and bins.pack_size is None
    assert [int(bins[i][0][0][0]) for i in range(5)] == [100, 101, 102, 200, 201]
    with pytest.raises(IndexError):
        bins[5]
    with pytest.raises(SftError, match="packed alike"):
        MixedBins([tmp_path / "a", _dataset(tmp_path / "c", 300, 2, pack_size=8)])
