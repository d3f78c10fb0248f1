"""`sft import-packed`: one-line refusal without --allow-pickle, import with it, --help."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from sft_cli.app import create_cli
from sft_core import get_plugin_manager
from sft_data.store import PreparedDataset


@pytest.fixture(scope="module")
def cli():
    return create_cli(get_plugin_manager(load_entrypoints=False))


@pytest.fixture
def nemo_file(tmp_path):
    array = np.empty(1, dtype=object)
    array[0] = {"input_ids": [1, 2, 3, 4, 5], "loss_mask": [0, 1, 1, 1, 0], "seq_start_id": [0, 2]}
    path = tmp_path / "packed_16_seed1.npy"
    np.save(path, array, allow_pickle=True)
    return path


def test_refuses_a_pickle_in_one_line(cli, nemo_file, tmp_path):
    result = CliRunner().invoke(cli, ["import-packed", str(nemo_file), "--output", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert "--allow-pickle" in result.stderr and "execute" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_imports_with_allow_pickle(cli, nemo_file, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["import-packed", str(nemo_file), "-o", str(out), "--allow-pickle"])
    assert result.exit_code == 0, result.output
    assert "imported 2 sequences in 1 bins (pack size 16" in result.stdout
    ds = PreparedDataset(out)
    assert [ids.tolist() for ids, _ in ds.bin(0)] == [[1, 2], [3, 4, 5]]
    # NeMo's shifted mask [0 | 1 1 0] becomes ours [F T | F T T]
    assert [mask.tolist() for _, mask in ds.bin(0)] == [[False, False], [False, True, True]]


def test_help(cli):
    result = CliRunner().invoke(cli, ["import-packed", "--help"])
    assert result.exit_code == 0
    assert "--allow-pickle" in result.stdout and "--output" in result.stdout
