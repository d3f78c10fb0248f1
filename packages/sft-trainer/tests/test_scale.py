"""Megatron-scale training on two gloo processes, in one torchrun launch (scale_worker.py), checked
against one-process runs here: the distributed optimizer trains as the replicated one with half
its state per rank; checkpoints saved at TP=2, PP=2 and DP=2 (distributed optimizer) resume at
TP=1/PP=1/DP=1 and the reverse; sequence parallelism changes nothing; a SIGKILL while a rank
writes its dist/ shards leaves the previous checkpoint to resume from."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("scale_worker.py")
_spec = importlib.util.spec_from_file_location("scale_worker", WORKER)
worker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(worker)


def plugin_manager():
    from sft_core import get_plugin_manager

    return get_plugin_manager(load_entrypoints=False)


def run(run_dir: Path, nemo, *overrides: str):
    from sft_trainer.config.loading import build_config
    from sft_trainer.run import train

    return train(build_config({}, worker.settings(run_dir, str(nemo), *overrides)), plugin_manager())


def checkpoint(run_dir: Path, step: int) -> Path:
    (found,) = (Path(run_dir) / "checkpoints").glob(f"megatron_gpt_sft--step={step:06d}-*")
    return found


def close(got: dict, want: dict, steps, tolerance: float) -> None:
    got = {int(k): v for k, v in got.items()}
    assert sorted(got) == list(steps), sorted(got)
    for step in steps:
        assert abs(got[step] - want[step]) <= tolerance, (step, got[step], want[step])


@pytest.fixture(scope="module")
def one_process(tiny_nemo, tmp_path_factory) -> Path:
    """The uninterrupted one-process run (distributed optimizer over one rank), checkpoints at 3 and 6."""
    run_dir = tmp_path_factory.mktemp("one") / "run"
    run(run_dir, tiny_nemo)
    return run_dir


@pytest.fixture(scope="module")
def launched(tiny_nemo, one_process, tmp_path_factory):
    out = tmp_path_factory.mktemp("scale")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                             "MASTER_PORT")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(port), str(WORKER), str(out), str(tiny_nemo), str(checkpoint(one_process, 3))]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**env, "OMP_NUM_THREADS": "1"}, timeout=900)
    results = out / "results.json"
    assert results.is_file(), proc.stderr[-4000:]
    results = json.loads(results.read_text())
    assert "optimizer_state_bytes" in results, proc.stderr[-4000:]  # every phase before the killed one ended
    return results, out, proc


@pytest.fixture(scope="module")
def baseline(one_process) -> dict[int, float]:
    return worker.losses(one_process)


def test_distributed_optimizer_trains_as_the_replicated_one(launched, baseline):
    results, _, _ = launched
    close(results["dp2-distributed"]["losses"], {int(k): v for k, v in results["dp2-replicated"]["losses"].items()},
          range(1, 7), 1e-5)
    close(results["dp2-distributed"]["losses"], baseline, range(1, 7), 1e-4)


def test_distributed_optimizer_halves_the_state_per_rank(launched):
    results, _, _ = launched
    replicated, distributed = results["optimizer_state_bytes"]["replicated"], results["optimizer_state_bytes"][
        "distributed"]
    assert replicated[0] == replicated[1] > 0
    for share in distributed:
        assert 0.45 <= share / replicated[0] <= 0.55, (distributed, replicated)


@pytest.mark.parametrize("layout", ["tp2", "pp2"])
def test_tensor_and_pipeline_parallel_runs_match_one_process(launched, baseline, layout):
    results, _, _ = launched
    close(results[layout]["losses"], baseline, range(1, 7), 1e-4)


def test_sequence_parallel_changes_nothing(launched):
    results, _, _ = launched
    close(results["tp2-sequence-parallel"]["losses"], {int(k): v for k, v in results["tp2"]["losses"].items()},
          range(1, 7), 1e-5)


@pytest.mark.parametrize("layout", ["dp2", "tp2", "pp2"])
def test_one_process_checkpoint_resumes_at_two_processes(launched, baseline, layout):
    results, _, _ = launched
    close(results[f"from-one-process-{layout}"]["losses"], baseline, range(4, 7), 1e-4)


@pytest.mark.parametrize("layout", ["dp2-distributed", "tp2", "pp2"])
def test_two_process_checkpoint_resumes_at_one_process(tiny_nemo, launched, baseline, tmp_path, capsys, layout):
    results, _, _ = launched
    saved = checkpoint(results[layout]["run_dir"], 3)
    meta = json.loads((saved / "state.json").read_text())
    assert (meta["world_size"], meta["tp_size"], meta["pp_size"], meta["dp_size"]) == {
        "dp2-distributed": (2, 1, 1, 2), "tp2": (2, 2, 1, 1), "pp2": (2, 1, 2, 1)}[layout]
    assert meta["optimizer"] == {"name": "distributed_fused_adam", "sharded_over_data_parallel": True}
    capsys.readouterr()
    run(tmp_path / "run", tiny_nemo, f"model.resume_from_checkpoint={saved}")
    out = capsys.readouterr().out
    assert f"resuming from {saved.name} (step 3)" in out
    assert "resharded to TP=1 PP=1 DP=1; RNG streams continue from this run's seed" in out
    close(worker.losses(tmp_path / "run"), baseline, range(4, 7), 1e-4)


def test_sigkill_during_a_distributed_save_leaves_the_previous_checkpoint(tiny_nemo, launched, baseline, tmp_path,
                                                                          capsys):
    from sft_trainer.checkpoint_verify import verify

    _, out, proc = launched
    assert proc.returncode != 0, proc.stdout[-2000:]  # rank 1 was killed while writing step 6's TP=2 shards
    assert "Signal 9 (SIGKILL) received by PID" in proc.stderr or "exitcode  : -9" in proc.stderr, proc.stderr[-3000:]
    killed = out / "killed"
    names = sorted(p.name for p in (killed / "checkpoints").iterdir())
    partial = [n for n in names if n.startswith(".tmp-megatron_gpt_sft--step=000006")]
    assert len(partial) == 1 and not (killed / "checkpoints" / partial[0] / "state.json").exists()
    previous = checkpoint(killed, 3)
    assert verify(previous) is None
    capsys.readouterr()
    run(killed, tiny_nemo)  # the same run directory, resumed at one process
    assert f"resuming from {previous.name} (step 3)" in capsys.readouterr().out
    assert not (killed / "checkpoints" / partial[0]).exists()
    close(worker.losses(killed), baseline, range(1, 7), 1e-4)


def test_inspect_says_what_a_checkpoint_holds(launched):
    from sft_trainer.checkpoint_inspect import describe_checkpoint

    results, _, _ = launched
    info = describe_checkpoint(checkpoint(results["dp2-distributed"]["run_dir"], 6))
    assert info["step"] == 6 and info["verifies"] is True and info["problem"] is None
    assert info["topology"] == {"world_size": 2, "tensor_model_parallel_size": 1, "pipeline_model_parallel_size": 1,
                                "data_parallel_size": 2, "expert_model_parallel_size": 1}
    assert info["optimizer"]["sharded_over_data_parallel"] is True
    assert info["optimizer"]["state_tensors"] > 0 and info["model"]["tensors"] > 0
    replicated = describe_checkpoint(checkpoint(results["pp2"]["run_dir"], 3))
    assert replicated["topology"]["pipeline_model_parallel_size"] == 2
