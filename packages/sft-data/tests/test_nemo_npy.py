"""Importing NeMo's packed .npy: pickles refused unless allowed, exact import, mask shift undone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sft_data.dataset import collate_arrays
from sft_data.errors import SftError
from sft_data.packing.nemo_npy import import_nemo_packed
from sft_data.store import PreparedDataset


def nemo_bin(sequences):
    """A bin as NeMo's fill_packing_strategy writes it; sequences are (ids, our loss mask)."""
    ids, mask, starts = [], [], []
    for seq_ids, seq_mask in sequences:
        starts.append(len(ids))
        ids.extend(seq_ids)
        mask.extend([*seq_mask[1:], False])  # NeMo: `x[1:] + [False]`, aligned with labels
    return {"input_ids": ids, "loss_mask": mask, "seq_start_id": starts}


SEQUENCES = [
    [([1, 2, 3, 4], [False, False, True, True]), ([5, 6, 7], [False, True, True])],
    [([8, 9, 10, 11, 12], [False, False, False, True, True])],
]


def save_objects(path: Path, items) -> Path:
    array = np.empty(len(items), dtype=object)
    array[:] = items
    np.save(path, array, allow_pickle=True)
    return path


@pytest.fixture
def nemo_file(tmp_path):
    return save_objects(tmp_path / "packed_8_seed7.npy", [nemo_bin(b) for b in SEQUENCES])


def test_refused_without_allow_pickle(nemo_file, tmp_path):
    with pytest.raises(SftError) as info:
        import_nemo_packed(nemo_file, tmp_path / "out")
    message = str(info.value)
    assert "\n" not in message
    assert "execute" in message and "--allow-pickle" in message and str(nemo_file) in message
    assert not (tmp_path / "out").exists()


class Payload:
    """Unpickling this would create a file: proof that refusing means not unpickling."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_refusal_runs_no_code(tmp_path):
    marker = tmp_path / "pwned"
    path = save_objects(tmp_path / "evil.npy", [Payload(marker)])
    with pytest.raises(SftError, match="--allow-pickle"):
        import_nemo_packed(path, tmp_path / "out")
    assert not marker.exists()


def test_imported_exactly_with_allow_pickle(nemo_file, tmp_path):
    summary = import_nemo_packed(nemo_file, tmp_path / "out", allow_pickle=True)
    assert summary == {"bins": 2, "sequences": 3, "tokens": 12, "pack_size": 8, "efficiency": 9 / 16}
    ds = PreparedDataset(tmp_path / "out")
    assert ds.header["pack_size"] == 8
    assert ds.header["packing"] == {"algorithm": "imported", "seed": 7}
    for b, expected in enumerate(SEQUENCES):
        assert [(ids.tolist(), mask.tolist()) for ids, mask in ds.bin(b)] == expected


def test_label_mask_after_import_equals_nemo_mask(nemo_file, tmp_path):
    # NeMo trains label i of a sequence where its shifted mask[i] is set (last position unused)
    import_nemo_packed(nemo_file, tmp_path / "out", allow_pickle=True)
    batch = collate_arrays([PreparedDataset(tmp_path / "out").bin(0)], pack_size=8)
    nemo = nemo_bin(SEQUENCES[0])
    expected = nemo["loss_mask"][0:3] + nemo["loss_mask"][4:6]  # each sequence minus its last
    assert batch["loss_mask"][0, :5].tolist() == [bool(x) for x in expected] == [False, True, True, True, True]
    assert batch["labels"][0, :5].tolist() == [2, 3, 4, 6, 7]


def test_pack_size_without_a_name_is_the_fullest_bin(tmp_path):
    path = save_objects(tmp_path / "mine.npy", [nemo_bin(b) for b in SEQUENCES])
    assert import_nemo_packed(path, tmp_path / "out", allow_pickle=True)["pack_size"] == 5
    assert import_nemo_packed(path, tmp_path / "out", allow_pickle=True, pack_size=64)["pack_size"] == 64
    with pytest.raises(SftError, match="more than the pack size 4"):
        import_nemo_packed(path, tmp_path / "out", allow_pickle=True, pack_size=4)


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([{"input_ids": [1, 2]}], "bin 0: expected a dict with input_ids, loss_mask and seq_start_id"),
        (["text"], "bin 0: expected a dict"),
        ([{"input_ids": [1, 2, 3], "loss_mask": [0, 1], "seq_start_id": [0]}], "2 entries for 3 input_ids"),
        ([{"input_ids": [1, 2, 3], "loss_mask": [0, 1, 0], "seq_start_id": [1]}], "must start at 0"),
        ([{"input_ids": [1, 2, 3], "loss_mask": [0, 1, 0], "seq_start_id": [0, 2]}], "sequences of 2\\+ tokens"),
        ([{"input_ids": ["a", "b"], "loss_mask": [0, 1], "seq_start_id": [0]}], "input_ids must be a flat list"),
        ([{"input_ids": [1, 2], "loss_mask": [0, 5], "seq_start_id": [0]}], "only 0/1"),
    ],
)
def test_bad_structure_is_refused_with_allow_pickle(tmp_path, items, message):
    path = save_objects(tmp_path / "bad.npy", items)
    with pytest.raises(SftError, match=message):
        import_nemo_packed(path, tmp_path / "out", allow_pickle=True)
    assert not (tmp_path / "out").exists()


def test_not_a_nemo_file(tmp_path):
    np.save(tmp_path / "ints.npy", np.arange(4))
    with pytest.raises(SftError, match="expected an object array of dicts, found int64 array"):
        import_nemo_packed(tmp_path / "ints.npy", tmp_path / "out")
    (tmp_path / "junk.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(SftError, match=r"not a readable \.npy file"):
        import_nemo_packed(tmp_path / "junk.npy", tmp_path / "out")
    with pytest.raises(SftError, match="no such file"):
        import_nemo_packed(tmp_path / "missing.npy", tmp_path / "out")
