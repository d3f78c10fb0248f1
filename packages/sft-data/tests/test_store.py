"""The prepared-dataset format: exact round trips, memory mapping, atomic writes, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sft_data import store
from sft_data.errors import SftError
from sft_data.packing.algorithms import BUILTIN_ALGORITHMS
from sft_data.packing.plan import pack_samples
from sft_data.store import PreparedDataset, write_prepared
from sft_data.types import TokenizedSample

HEADER = {"tokenizer": {"fingerprint": "abc"}, "template": "nemo"}


@st.composite
def tokenized_samples(draw, max_len=20):
    n = draw(st.integers(0, 25))
    samples = []
    for i in range(n):
        length = draw(st.integers(2, max_len))
        ids = draw(st.lists(st.integers(0, 2**31 - 1), min_size=length, max_size=length))
        mask = [False, *draw(st.lists(st.booleans(), min_size=length - 1, max_size=length - 1))]
        samples.append(TokenizedSample(ids, mask, source=f"x.jsonl:{i + 1}"))
    return samples


def sample(ids, trained_from=1):
    return TokenizedSample(list(ids), [i >= trained_from for i in range(len(ids))])


@pytest.mark.parametrize("algorithm", BUILTIN_ALGORITHMS, ids=lambda a: a.name)
@given(samples=tokenized_samples(), pack_size=st.integers(19, 60), seed=st.integers(0, 99))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_packed_round_trip_is_exact(tmp_path_factory, algorithm, samples, pack_size, seed):
    directory = tmp_path_factory.mktemp("ds") / "prepared"
    bins, _stats = pack_samples(samples, pack_size, algorithm, seed)
    write_prepared(directory, samples, bins=bins, pack_size=pack_size,
                   header={**HEADER, "packing": {"algorithm": algorithm.name, "seed": seed}})
    ds = PreparedDataset(directory)
    assert (ds.num_sequences, ds.num_bins, ds.pack_size) == (len(samples), len(bins), pack_size)
    assert ds.header["packing"] == {"algorithm": algorithm.name, "seed": seed}
    assert ds.header["tokenizer"] == HEADER["tokenizer"]
    assert ds.header["counts"]["trained_tokens"] == sum(s.num_trained for s in samples)
    for b, members in enumerate(bins):
        # order inside a bin is recoverable: stored sequence k is original sample sample_index[k]
        stored = list(ds.bin_sequences(b))
        assert ds.sample_index[stored].tolist() == members
        for k, (ids, mask) in zip(stored, ds.bin(b), strict=True):
            original = samples[int(ds.sample_index[k])]
            assert ids.tolist() == original.input_ids
            assert mask.tolist() == original.loss_mask
        assert sum(len(ids) - 1 for ids, _ in ds.bin(b)) <= pack_size
    assert sorted(ds.sample_index.tolist()) == list(range(len(samples)))
    assert ds.sequence_lengths.tolist() == [len(samples[i].input_ids) for i in ds.sample_index]


def test_unpacked_is_one_sequence_per_bin_and_memory_mapped(tmp_path):
    samples = [sample(range(5)), sample([7, 8]), sample(range(10, 40))]
    write_prepared(tmp_path / "d", samples, bins=None, pack_size=None, header=HEADER)
    ds = PreparedDataset(tmp_path / "d")
    assert ds.num_bins == 3 and ds.pack_size is None
    assert [ds.bin(i)[0][0].tolist() for i in range(3)] == [s.input_ids for s in samples]
    assert isinstance(ds.tokens, np.memmap) and ds.tokens.dtype == np.int32
    assert ds.loss_mask.dtype == np.bool_
    header = json.loads((tmp_path / "d" / "header.json").read_text())
    assert header["format_version"] == store.FORMAT_VERSION
    assert header["counts"] == {"sequences": 3, "bins": 3, "tokens": 37, "trained_tokens": 34}


def test_overwrites_a_dataset_or_an_empty_directory(tmp_path):
    (tmp_path / "empty").mkdir()
    write_prepared(tmp_path / "empty", [sample([1, 2])], bins=None, pack_size=None, header={})
    write_prepared(tmp_path / "empty", [sample([3, 4, 5])], bins=None, pack_size=None, header={})
    assert PreparedDataset(tmp_path / "empty").sequence(0)[0].tolist() == [3, 4, 5]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]  # no temporary siblings left


def test_refuses_to_overwrite_other_things(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(SftError, match="is not a prepared dataset; refusing to overwrite"):
        write_prepared(tmp_path / "notes", [sample([1, 2])], bins=None, pack_size=None, header={})
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"
    (tmp_path / "file").write_text("x")
    with pytest.raises(SftError, match="is not a directory"):
        write_prepared(tmp_path / "file", [sample([1, 2])], bins=None, pack_size=None, header={})


def test_an_interrupted_write_keeps_the_old_dataset(tmp_path, monkeypatch):
    write_prepared(tmp_path / "d", [sample([1, 2, 3])], bins=None, pack_size=None, header={})
    real_save = np.save
    calls = []

    def failing_save(path, array, **kwargs):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        real_save(path, array, **kwargs)

    monkeypatch.setattr(store.np, "save", failing_save)
    with pytest.raises(KeyboardInterrupt):
        write_prepared(tmp_path / "d", [sample([9, 9])], bins=None, pack_size=None, header={})
    monkeypatch.undo()
    assert PreparedDataset(tmp_path / "d").sequence(0)[0].tolist() == [1, 2, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_refuses_bad_packing_and_bad_samples(tmp_path):
    two = [sample([1, 2, 3]), sample([4, 5, 6])]
    with pytest.raises(SftError, match="overfilled bin 0: 4 > pack size 3"):
        write_prepared(tmp_path / "d", two, bins=[[0, 1]], pack_size=3, header={})
    with pytest.raises(SftError, match="1 missing"):
        write_prepared(tmp_path / "d", two, bins=[[0]], pack_size=8, header={})
    with pytest.raises(SftError, match="needs its pack size"):
        write_prepared(tmp_path / "d", two, bins=[[0, 1]], pack_size=None, header={})
    with pytest.raises(SftError, match=r"x\.jsonl:4 has fewer than 2 tokens"):
        write_prepared(tmp_path / "d", [TokenizedSample([1], [False], source="x.jsonl:4")],
                       bins=None, pack_size=None, header={})
    with pytest.raises(ValueError, match="format_version"):
        write_prepared(tmp_path / "d", two, bins=None, pack_size=None, header={"format_version": 3})
    assert not (tmp_path / "d").exists()


@pytest.fixture
def dataset_dir(tmp_path):
    write_prepared(tmp_path / "d", [sample([1, 2, 3]), sample([4, 5])], bins=[[1, 0]], pack_size=8, header={})
    return tmp_path / "d"


def one_line_error(directory, match):
    with pytest.raises(SftError, match=match) as info:
        PreparedDataset(directory)
    assert "\n" not in str(info.value)


def test_unknown_format_version_is_one_line(dataset_dir):
    header = json.loads((dataset_dir / "header.json").read_text())
    (dataset_dir / "header.json").write_text(json.dumps({**header, "format_version": 99}))
    one_line_error(dataset_dir, "format_version 99 is not supported")


def test_missing_files_are_one_line(dataset_dir, tmp_path):
    (dataset_dir / "seq_offsets.npy").unlink()
    one_line_error(dataset_dir, "seq_offsets.npy is missing")
    one_line_error(tmp_path / "nowhere", "header.json is missing")


def test_a_pickled_array_is_never_loaded(dataset_dir):
    np.save(dataset_dir / "tokens.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    one_line_error(dataset_dir, "tokens.npy: unreadable array")


def test_inconsistent_arrays_are_refused(dataset_dir):
    np.save(dataset_dir / "bin_offsets.npy", np.array([0, 1], dtype=np.int64))
    one_line_error(dataset_dir, "do not agree")
    np.save(dataset_dir / "bin_offsets.npy", np.array([0, 2], dtype=np.int32))
    one_line_error(dataset_dir, "expected a flat int64 array")


def test_pickles_by_path_not_by_content(dataset_dir):
    import pickle

    ds = PreparedDataset(dataset_dir)
    data = pickle.dumps(ds)
    assert len(data) < 500
    copy = pickle.loads(data)
    assert isinstance(copy.tokens, np.memmap)
    assert [(i.tolist(), m.tolist()) for i, m in copy.bin(0)] == [(i.tolist(), m.tolist()) for i, m in ds.bin(0)]
