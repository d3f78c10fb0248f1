"""A full disk (or a quota, a size limit, permissions) while saving a checkpoint, writing
metrics.jsonl or exporting the final .nemo: one line naming the file and the cause, the previous
checkpoint and any previous .nemo intact, no partial directory left.

"Real" cases lower RLIMIT_FSIZE around ``train()`` in this process (with SIGXFSZ ignored, a write
past the limit fails with EFBIG, as on a full disk torch's and tar's writers fail part-way).
"""

from __future__ import annotations

import contextlib
import errno
import json
import resource
import signal
import tarfile
from pathlib import Path

import pytest
import torch

COMMON = ("trainer.sft.max_steps=4", "exp_manager.checkpoint_callback_params.save_nemo_on_train_end=false")
TORCH_WRITE_ERROR = "[enforce fail at inline_container.cc:671] . unexpected pos 704 vs 598"


@contextlib.contextmanager
def file_size_limit(limit: int):
    """Writes past ``limit`` bytes fail with EFBIG (the hard limit is kept, so it can be raised back)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def plugin_manager():
    from sft_core import get_plugin_manager

    return get_plugin_manager(load_entrypoints=False)


def checkpoint_names(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").iterdir())


def _failing_save(exc: BaseException):
    """torch.save failing for the step-4 checkpoint's dist/ files (torch's checkpoint writer
    saves each tensor into a wrapper around the open file: the name is that file's)."""
    real = torch.save

    def save(obj, f, *args, **kwargs):
        name = str(getattr(getattr(f, "raw", f), "name", f))
        if "step=000004" in name and "/dist/" in name:
            raise exc
        return real(obj, f, *args, **kwargs)

    return save


@pytest.mark.parametrize(("exc", "cause"), [
    (OSError(errno.ENOSPC, "No space left on device"), "no space left on the device"),
    (OSError(errno.EACCES, "Permission denied"), "permission denied"),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), "the disk quota is exceeded"),
    (RuntimeError(TORCH_WRITE_ERROR), "the write failed, the disk may be full ("),
], ids=["ENOSPC", "EACCES", "EDQUOT", "torch-RuntimeError"])
def test_checkpoint_write_failure_keeps_the_previous_checkpoint(tiny_nemo, train_config, tmp_path, monkeypatch,
                                                                exc, cause):
    from sft_trainer.checkpoint import CheckpointError
    from sft_trainer.checkpoint_verify import verify
    from sft_trainer.run import train

    run = tmp_path / "run"
    monkeypatch.setattr(torch, "save", _failing_save(exc))
    with pytest.raises(CheckpointError) as info:
        train(train_config(tiny_nemo, run, *COMMON), plugin_manager())
    message = str(info.value)
    assert "\n" not in message
    partial = run / "checkpoints" / ".tmp-megatron_gpt_sft--step=000004-consumed_samples=32-epoch=0"
    assert message.startswith("checkpoint at step 4 not saved (the earlier checkpoints are intact): "
                              f"{partial}"), message
    assert f"/dist: {cause}" in message, message
    if isinstance(exc, RuntimeError):
        assert "free there; torch: [enforce fail at inline_container.cc:671]" in message
    names = checkpoint_names(run)
    assert len(names) == 1 and names[0].startswith("megatron_gpt_sft--step=000002")  # no .tmp- left
    assert verify(run / "checkpoints" / names[0]) is None


def test_checkpoint_save_past_a_real_file_size_limit(tiny_nemo, train_config, tmp_path):
    """The RNG file fits under 900 kB, the dist checkpoint's data file (model and optimizer, 1.9 MB) does not."""
    from sft_trainer.checkpoint import CheckpointError
    from sft_trainer.run import train

    run = tmp_path / "run"
    with file_size_limit(900_000), pytest.raises(CheckpointError) as info:
        train(train_config(tiny_nemo, run, *COMMON), plugin_manager())
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("checkpoint at step 2 not saved"), message
    assert "/dist: the write failed, the disk may be full (" in message, message
    assert checkpoint_names(run) == []


def test_metrics_write_past_a_real_file_size_limit_stops_the_run(tiny_nemo, train_config, tmp_path):
    from sft_trainer.loop import MetricsWriteError
    from sft_trainer.run import train

    run = tmp_path / "run"
    run.mkdir()
    record = json.dumps({"step": 0, "note": "x" * 200}) + "\n"  # step 0: kept by a fresh start
    limit = 800_000
    (run / "metrics.jsonl").write_text(record * ((limit - 400) // len(record)))
    cfg = train_config(tiny_nemo, run, *COMMON, "exp_manager.create_checkpoint_callback=false")
    with file_size_limit(limit), pytest.raises(MetricsWriteError) as info:
        train(cfg, plugin_manager())
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("metrics of step "), message
    assert message.endswith(f"not written: {run / 'metrics.jsonl'}: the file is larger than the file-size limit "
                            "(ulimit -f)"), message


def test_a_metrics_file_that_cannot_be_opened_stops_the_run_before_training(tiny_nemo, train_config, tmp_path):
    from sft_core import SftError
    from sft_trainer.run import train

    run = tmp_path / "run"
    (run / "metrics.jsonl").mkdir(parents=True)  # not openable for appending, even by root
    with pytest.raises(SftError) as info:
        train(train_config(tiny_nemo, run, *COMMON), plugin_manager())
    assert str(info.value).startswith(f"logger 'jsonl' could not start: {run / 'metrics.jsonl'}: "), str(info.value)
    assert not (run / "checkpoints").exists() or checkpoint_names(run) == []


@pytest.fixture(scope="module")
def extracted_nemo(tiny_nemo, tmp_path_factory) -> Path:
    """The tiny model as a directory: loading it writes nothing (no extraction under the limit)."""
    root = tmp_path_factory.mktemp("extracted") / "tiny"
    with tarfile.open(tiny_nemo) as tar:
        tar.extractall(root, filter="data")
    return root


@pytest.mark.parametrize(("limit", "cause"), [
    (400_000, "writing the weights failed, the disk may be full ("),  # a 662 kB weight shard
    (680_000, "the file is larger than the file-size limit (ulimit -f)"),  # shards fit, the 696 kB tar does not
], ids=["weights", "archive"])
def test_export_past_a_real_file_size_limit_keeps_the_previous_nemo(extracted_nemo, train_config, tmp_path, limit,
                                                                    cause):
    from sft_trainer.run import train
    from sft_trainer.write_errors import WriteFailed

    run = tmp_path / "run"
    previous = run / "checkpoints" / "megatron_gpt_sft.nemo"
    previous.parent.mkdir(parents=True)
    previous.write_bytes(b"the previous export")
    cfg = train_config(extracted_nemo, run, "trainer.sft.max_steps=2", "exp_manager.create_checkpoint_callback=false")
    with file_size_limit(limit), pytest.raises(WriteFailed) as info:
        train(cfg, plugin_manager())
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"the trained model was not exported: {previous}: {cause}"), message
    assert message.endswith("; an earlier megatron_gpt_sft.nemo is unchanged, the training checkpoints are intact")
    assert previous.read_bytes() == b"the previous export"
    assert sorted(p.name for p in previous.parent.iterdir()) == ["megatron_gpt_sft.nemo"]  # no staging, no partial


def test_an_uncreatable_checkpoint_directory_is_one_line(tiny_nemo, train_config, tmp_path):
    from sft_trainer.checkpoint import CheckpointError
    from sft_trainer.run import train

    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoints").write_text("a file where the directory goes")
    with pytest.raises(CheckpointError) as info:
        train(train_config(tiny_nemo, run, *COMMON), plugin_manager())
    assert str(info.value) == f"cannot create the checkpoint directory: {run / 'checkpoints'}: File exists"
