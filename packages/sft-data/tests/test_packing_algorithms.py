"""Packing algorithms: partition and capacity properties, agreement with the naive reference
loops, efficiency on chat-like lengths, speed at scale, and registration through the hookspec."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sft_core import get_plugin_manager
from sft_data.errors import PluginError, SftError
from sft_data.hookspecs import hookimpl
from sft_data.packing import PackingAlgorithm, check_bins, pack_samples, packing_stats
from sft_data.packing.algorithms import BUILTIN_ALGORITHMS
from sft_data.registries import DataRegistries
from sft_data.types import TokenizedSample

ALGORITHMS = {a.name: a for a in BUILTIN_ALGORITHMS}


@st.composite
def lengths_and_size(draw):
    pack_size = draw(st.integers(1, 64))
    lengths = draw(st.lists(st.integers(0, pack_size), max_size=80))
    return lengths, pack_size


def naive_first_fit(order, lengths, pack_size):
    """The reference's O(n x bins) loop (NeMo's first_fit), on indices."""
    bins, loads = [], []
    for i in order:
        for b, load in enumerate(loads):
            if load + lengths[i] <= pack_size:
                bins[b].append(i)
                loads[b] += lengths[i]
                break
        else:
            bins.append([i])
            loads.append(lengths[i])
    return bins


def naive_best_fit_loads(order, lengths, pack_size):
    loads = []
    for i in order:
        fitting = [b for b, load in enumerate(loads) if load + lengths[i] <= pack_size]
        if fitting:
            best = max(fitting, key=lambda b: loads[b])
            loads[best] += lengths[i]
        else:
            loads.append(lengths[i])
    return sorted(loads)


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
@given(case=lengths_and_size(), seed=st.integers(0, 2**16))
@settings(max_examples=150, deadline=None)
def test_every_index_once_and_no_bin_overfull(name, case, seed):
    lengths, pack_size = case
    bins = ALGORITHMS[name].pack(lengths, pack_size, seed)
    flat = sorted(i for b in bins for i in b)
    assert flat == list(range(len(lengths)))
    assert all(b for b in bins)
    assert all(sum(lengths[i] for i in b) <= pack_size for b in bins)
    check_bins(bins, lengths, pack_size, name)  # our own validator agrees
    # a bin is only opened when nothing had room: no two bins could have been one
    loads = [sum(lengths[i] for i in b) for b in bins]
    opened_by = [lengths[b[0]] for b in bins]
    for later in range(len(bins)):
        for earlier in range(later):
            assert loads[earlier] + opened_by[later] > pack_size
    assert bins == ALGORITHMS[name].pack(lengths, pack_size, seed)  # deterministic


@given(case=lengths_and_size(), seed=st.integers(0, 1000))
@settings(max_examples=150, deadline=None)
def test_first_fit_variants_match_the_reference_loop(case, seed):
    lengths, pack_size = case
    decreasing = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    assert ALGORITHMS["first_fit_decreasing"].pack(lengths, pack_size, seed) == naive_first_fit(
        decreasing, lengths, pack_size
    )
    shuffled = np.random.default_rng(seed).permutation(len(lengths)).tolist()
    assert ALGORITHMS["first_fit_shuffle"].pack(lengths, pack_size, seed) == naive_first_fit(
        shuffled, lengths, pack_size
    )


@given(case=lengths_and_size())
@settings(max_examples=150, deadline=None)
def test_best_fit_matches_the_reference_loop(case):
    # tie-breaking among equally full bins cannot change the multiset of loads
    lengths, pack_size = case
    bins = ALGORITHMS["best_fit_decreasing"].pack(lengths, pack_size, 0)
    decreasing = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    assert sorted(sum(lengths[i] for i in b) for b in bins) == naive_best_fit_loads(
        decreasing, lengths, pack_size
    )


def test_shuffle_depends_on_the_seed():
    lengths = list(range(1, 200))
    packs = {str(ALGORITHMS["first_fit_shuffle"].pack(lengths, 256, seed)) for seed in range(5)}
    assert len(packs) == 5


def chat_lengths(n, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(5.8, 0.9, n), 50, 2048).astype(np.int64)


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_efficiency_on_chat_lengths(name):
    lengths = chat_lengths(5000)
    bins = ALGORITHMS[name].pack(lengths, 2048, 0)
    stats = packing_stats(bins, lengths, 2048)
    assert stats["efficiency"] >= 0.97
    assert stats["bins"] >= int(np.ceil(lengths.sum() / 2048))
    assert stats["sequences_per_bin"]["mean"] == pytest.approx(len(lengths) / len(bins))


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_fifty_thousand_sequences_pack_quickly(name):
    # the reference's O(n x bins) loop takes minutes here; a loose bound still catches that
    lengths = chat_lengths(50_000, seed=1)
    start = time.perf_counter()
    ALGORITHMS[name].pack(lengths, 2048, 0)
    assert time.perf_counter() - start < 10


@pytest.mark.parametrize(
    ("lengths", "size", "message"),
    [([5, 11], 10, "sequence 1 has 11 tokens, more than the pack size 10"),
     ([3, -1], 10, "negative length"),
     ([1], 0, "pack size must be a positive integer")],
)
def test_refuses_what_no_bin_can_hold(lengths, size, message):
    with pytest.raises(SftError, match=message):
        ALGORITHMS["first_fit_decreasing"].pack(lengths, size, 0)


def test_check_bins_catches_a_broken_algorithm():
    with pytest.raises(SftError, match="1 missing, 0 repeated"):
        check_bins([[0]], [1, 1], 4, "broken")
    with pytest.raises(SftError, match="0 missing, 1 repeated"):
        check_bins([[0, 1], [1]], [1, 1], 4, "broken")
    with pytest.raises(SftError, match="overfilled bin 0: 5 > pack size 4"):
        check_bins([[0, 1]], [2, 3], 4, "broken")


class ExtraAlgorithmPlugin:
    @hookimpl
    def sft_register_packing_algorithms(self, register):
        register(PackingAlgorithm("one_per_bin", "every sequence alone", lambda lengths, size, seed: [
            [i] for i in range(len(lengths))]))


class DuplicatePlugin:
    @hookimpl
    def sft_register_packing_algorithms(self, register):
        register(PackingAlgorithm("first_fit_decreasing", "a clash", lambda lengths, size, seed: []))


def test_a_plugin_algorithm_is_registered_and_usable():
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(ExtraAlgorithmPlugin(), name="extra-packing")
    registry = DataRegistries.from_plugin_manager(pm).packing_algorithms
    assert set(registry.names()) >= {"one_per_bin", *ALGORITHMS}
    assert registry.entry("one_per_bin").plugin == "extra-packing"
    assert registry.entry("first_fit_shuffle").plugin == "sft_data.packing.builtin"
    samples = [TokenizedSample([1, 2, 3], [False, True, True]), TokenizedSample([4, 5], [False, True])]
    bins, stats = pack_samples(samples, 4, registry.get("one_per_bin"))
    assert bins == [[0], [1]]
    assert stats["algorithm"] == "one_per_bin"
    assert stats["efficiency"] == pytest.approx(3 / 8)  # positions: 2 + 1 of 2 bins x 4


def test_a_duplicate_algorithm_name_names_both_plugins():
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(DuplicatePlugin(), name="clashing-plugin")
    with pytest.raises(PluginError) as info:
        DataRegistries.from_plugin_manager(pm)
    assert "sft_data.packing.builtin" in str(info.value)
    assert "clashing-plugin" in str(info.value)
    assert "first_fit_decreasing" in str(info.value)


def test_pack_samples_counts_positions_not_ids():
    # 3 ids fill 2 positions: two such samples fit a 4-position bin exactly
    samples = [TokenizedSample([1, 2, 3], [False, True, True]) for _ in range(2)]
    bins, stats = pack_samples(samples, 4, ALGORITHMS["first_fit_decreasing"])
    assert bins == [[0, 1]]
    assert stats["efficiency"] == 1.0
    with pytest.raises(SftError, match="fewer than 2 tokens"):
        pack_samples([TokenizedSample([1], [False], source="a.jsonl:3")], 4, ALGORITHMS["first_fit_decreasing"])
