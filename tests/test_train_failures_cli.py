"""`sft train` as users run it, when something breaks: a bad config value, a damaged checkpoint
followed by a full disk, a failed final export, and a write failing on one rank of two. Each is
one line on stderr (no traceback), exit 1, and every rank stops."""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]

# An `sft` plugin that makes rank 1's checkpoint writes fail at step 4, as on a full local disk
CHAOS = """
import errno, os, torch

if os.environ.get("RANK") == "1":
    _save = torch.save

    def _full_disk(obj, f, *args, **kwargs):
        if "step=000004" in str(f):
            raise OSError(errno.ENOSPC, "No space left on device")
        return _save(obj, f, *args, **kwargs)

    torch.save = _full_disk
"""


def _env(extra_path: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    if extra_path:
        env["PYTHONPATH"] = str(extra_path)
    return env


def _limit(size: int):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    return apply


def sft_train(config, tmp_path: Path, *overrides: str, file_size: int | None = None, env=None, timeout=300):
    from sft_trainer.config.loading import dump_config

    path = tmp_path / "config.yaml"
    path.write_text(dump_config(config))
    return subprocess.run([sys.executable, "-m", "sft_cli", "train", "--config", str(path), *overrides],
                          capture_output=True, text=True, env=env or _env(), timeout=timeout,
                          preexec_fn=_limit(file_size) if file_size else None)


def assert_one_error_line(proc, start: str) -> str:
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"Error: {start}"), proc.stderr[-3000:]
    return errors[0]


def test_bad_value_is_refused_before_anything_loads(train_config, tmp_path):
    cfg = train_config(tmp_path / "absent.nemo", tmp_path / "run")
    proc = sft_train(cfg, tmp_path, "model.seed=-1")
    assert_one_error_line(proc, "config key 'model.seed' must be an integer in [0, 4294967295], got -1")
    assert not (tmp_path / "run").exists()


def test_damaged_checkpoint_is_skipped_then_a_full_disk_stops_the_save(tiny_nemo, train_config, tmp_path):
    from sft_core import get_plugin_manager
    from sft_trainer.checkpoint_verify import verify
    from sft_trainer.run import train

    run = tmp_path / "run"
    four = ("trainer.sft.max_steps=4", "exp_manager.checkpoint_callback_params.save_nemo_on_train_end=false")
    train(train_config(tiny_nemo, run, *four), get_plugin_manager(load_entrypoints=False))
    good, damaged = sorted((run / "checkpoints").glob("megatron_gpt_sft--*"))
    marker = tmp_path / "marker"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"torch": Payload(), "python": 1, "tracker": 2}, damaged / "rng_rank00000.pt")
    # 900 kB: the .nemo's 662 kB weights extract and the RNG file fits; the 1.9 MB dist/ data file does not
    proc = sft_train(train_config(tiny_nemo, run, "trainer.sft.max_steps=6"), tmp_path, file_size=900_000)
    warnings = [line for line in proc.stdout.splitlines() if "skipping" in line]
    assert len(warnings) == 1 and warnings[0].startswith(
        f"warning: skipping checkpoint {damaged}: rng_rank00000.pt: refused by the weights-only loader"), proc.stdout
    assert f"resuming from {good.name} (step 2)" in proc.stdout
    line = assert_one_error_line(proc, "checkpoint at step 4 not saved (the earlier checkpoints are intact): ")
    assert "/dist: the write failed, the disk may be full (" in line
    assert "file-size limit 900000 bytes" in line
    assert not marker.exists()
    assert verify(good) is None and damaged.is_dir()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [good.name, damaged.name]


def test_failed_export_is_one_line_and_keeps_the_previous_nemo(tiny_nemo, train_config, tmp_path):
    extracted = tmp_path / "tiny"
    with tarfile.open(tiny_nemo) as tar:
        tar.extractall(extracted, filter="data")  # loading a directory writes nothing under the limit
    run = tmp_path / "run"
    previous = run / "checkpoints" / "megatron_gpt_sft.nemo"
    previous.parent.mkdir(parents=True)
    previous.write_bytes(b"the previous export")
    cfg = train_config(extracted, run, "trainer.sft.max_steps=2", "exp_manager.create_checkpoint_callback=false")
    proc = sft_train(cfg, tmp_path, file_size=400_000)
    line = assert_one_error_line(proc, f"the trained model was not exported: {previous}: writing the weights failed")
    assert line.endswith("an earlier megatron_gpt_sft.nemo is unchanged, the training checkpoints are intact")
    assert "[rank0]" not in proc.stderr
    assert previous.read_bytes() == b"the previous export"
    assert sorted(p.name for p in previous.parent.iterdir()) == ["megatron_gpt_sft.nemo"]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_write_failing_on_one_rank_stops_every_rank(tiny_nemo, train_config, tmp_path):
    """Two data-parallel ranks launched by hand (no torchrun to kill a survivor): rank 1's disk is
    full at step 4; both ranks report it and exit, the step-2 checkpoint stays complete."""
    from sft_trainer.checkpoint_verify import verify
    from sft_trainer.config.loading import dump_config

    plugins = tmp_path / "plugins"
    (plugins / "sft_chaos_disk-0.1.dist-info").mkdir(parents=True)
    (plugins / "sft_chaos_disk.py").write_text(textwrap.dedent(CHAOS))
    (plugins / "sft_chaos_disk-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: sft-chaos-disk\nVersion: 0.1\n")
    (plugins / "sft_chaos_disk-0.1.dist-info" / "entry_points.txt").write_text("[sft]\nchaos_disk = sft_chaos_disk\n")
    run = tmp_path / "run"
    config = tmp_path / "config.yaml"
    config.write_text(dump_config(train_config(tiny_nemo, run, "exp_manager.checkpoint_callback_params."
                                               "save_nemo_on_train_end=false")))
    port = str(_port())
    procs = []
    for rank in (0, 1):
        env = {**_env(plugins), "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
        procs.append(subprocess.Popen([sys.executable, "-m", "sft_cli", "train", "--config", str(config)],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            results.append((proc.returncode, out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    partial = run / "checkpoints" / ".tmp-megatron_gpt_sft--step=000004-consumed_samples=32-epoch=0"
    for code, _, err in results:
        assert code == 1, err[-3000:]
        assert "Traceback" not in err, err[-3000:]
        errors = [line for line in err.splitlines() if line.startswith("Error: ")]
        assert len(errors) == 1, err[-3000:]
        assert errors[0].startswith("Error: checkpoint at step 4 not saved (the earlier checkpoints are intact): "
                                    f"rank 1: {partial}"), errors[0]
        assert errors[0].endswith("/rng_rank00001.pt: no space left on the device"), errors[0]
    checkpoints = sorted((run / "checkpoints").iterdir())
    assert [p.name[:29] for p in checkpoints] == ["megatron_gpt_sft--step=000002"]
    assert verify(checkpoints[0]) is None
    assert json.loads((checkpoints[0] / "state.json").read_text())["world_size"] == 2
