"""Damaged and tampered training checkpoints, built by the tests: resume reports each in one line,
never runs what it holds, falls back to the newest checkpoint that verifies, and trains on exactly
as an uninterrupted run; damaged directories are never deleted."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pluggy
import pytest
import torch

hookimpl = pluggy.HookimplMarker("sft")
COMMON = ("trainer.sft.max_steps=6", "exp_manager.checkpoint_callback_params.save_nemo_on_train_end=false")
DISTCP, METADATA, RNG = "dist/__0_0.distcp", "dist/.metadata", "rng_rank00000.pt"


class Killed(BaseException):
    """Stands in for a kill: the run stops at once (event hooks mute plain Exceptions)."""


class KillAfterSave:
    def __init__(self, step: int):
        self.step = step

    @hookimpl
    def sft_on_save(self, state, path):
        if state.step == self.step:
            raise Killed(path)


class Payload:
    """Unpickled by a plain loader, it creates ``marker``: a stand-in for running anything."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def plugin_manager(*plugins):
    from sft_core import get_plugin_manager

    pm = get_plugin_manager(load_entrypoints=False)
    for plugin in plugins:
        pm.register(plugin)
    return pm


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def losses(run_dir: Path) -> dict[int, float]:
    return {r["step"]: r["train/loss"] for r in records(run_dir) if "train/loss" in r}


def checkpoints(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "checkpoints").glob("megatron_gpt_sft--step=*"))


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def baseline(tiny_nemo, train_config, tmp_path_factory) -> dict[int, float]:
    from sft_trainer.run import train

    run = tmp_path_factory.mktemp("baseline") / "run"
    train(train_config(tiny_nemo, run, *COMMON), plugin_manager())
    return losses(run)


@pytest.fixture(scope="module")
def interrupted(tiny_nemo, train_config, tmp_path_factory) -> Path:
    """A 6-step run killed right after its step-4 checkpoint: checkpoints at steps 2 and 4."""
    from sft_trainer.run import train

    run = tmp_path_factory.mktemp("interrupted") / "run"
    with pytest.raises(Killed):
        train(train_config(tiny_nemo, run, *COMMON), plugin_manager(KillAfterSave(4)))
    assert [int(p.name.split("step=")[1][:6]) for p in checkpoints(run)] == [2, 4]
    return run


def _edit_state(checkpoint: Path, change) -> None:
    meta = json.loads((checkpoint / "state.json").read_text())
    change(meta)
    (checkpoint / "state.json").write_text(json.dumps(meta))


def _truncate(file: Path) -> None:
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])


def _edit_metadata(checkpoint: Path, change) -> None:
    """The dist checkpoint's ``.metadata`` changed and pickled again (allow-listed classes only)."""
    from sft_model.nemo.untrusted import read_metadata

    meta = read_metadata((checkpoint / METADATA).read_bytes(), checkpoint)
    change(meta)
    (checkpoint / METADATA).write_bytes(pickle.dumps(meta))


def _byte_entry(checkpoint: Path, value) -> None:
    """``torch.save(value)`` appended to the .distcp; the common-state byte entry points at it."""
    import io

    buffer = io.BytesIO()
    torch.save(value, buffer)
    distcp = checkpoint / DISTCP
    offset = distcp.stat().st_size
    with open(distcp, "ab") as handle:
        handle.write(buffer.getvalue())

    def point(meta):
        hits = [info for index, info in meta.storage_data.items() if index.fqn.startswith("common_state")]
        assert hits
        for info in hits:
            info.offset, info.length = offset, len(buffer.getvalue())

    _edit_metadata(checkpoint, point)


def _drop_optimizer(meta) -> None:
    for key in [k for k in meta.state_dict_metadata if k.startswith("optimizer.")]:
        del meta.state_dict_metadata[key]
    for index in [i for i in meta.storage_data if i.fqn.startswith("optimizer.")]:
        del meta.storage_data[index]


# each: how to damage a checkpoint directory, and what the one-line report must say
DAMAGE = {
    "pickle-in-dist": (lambda c, m: _byte_entry(c, [Payload(m)]),
                       "dist: refusing checkpoint entry common_state"),
    "pickle-as-metadata": (lambda c, m: (c / METADATA).write_bytes(pickle.dumps(Payload(m))),
                           "dist: unsafe or corrupt checkpoint metadata dist/.metadata (refusing to load _io.open)"),
    "raw-pickle-rng": (lambda c, m: (c / RNG).write_bytes(pickle.dumps({"torch": Payload(m)})),
                       f"{RNG}: not a torch zip-format file"),
    "pickle-in-rng": (lambda c, m: torch.save({"torch": Payload(m), "python": 1, "tracker": 2}, c / RNG),
                      f"{RNG}: refused by the weights-only loader, nothing in it was run"),
    "truncated": (lambda c, m: _truncate(c / DISTCP),
                  f"dist: checkpoint file {DISTCP} is missing, a link, or shorter than the"),
    "truncated-metadata": (lambda c, m: _truncate(c / METADATA), "dist: unsafe or corrupt checkpoint metadata"),
    "empty-file": (lambda c, m: (c / RNG).write_bytes(b""), f"{RNG}: not a torch zip-format file"),
    "missing-file": (lambda c, m: (c / RNG).unlink(), f"{RNG}: missing"),
    "missing-distcp": (lambda c, m: (c / DISTCP).unlink(), f"dist: checkpoint file {DISTCP} is missing"),
    "missing-dist": (lambda c, m: shutil.rmtree(c / "dist"), "dist/: missing"),
    "wrong-content": (lambda c, m: torch.save({"not": torch.zeros(1)}, c / RNG), f"{RNG}: holds a dict, not what"),
    "no-optimizer-state": (lambda c, m: _edit_metadata(c, _drop_optimizer), "dist: holds no optimizer state"),
    "corrupt-metadata-json": (lambda c, m: (c / "dist/metadata.json").write_text("{"),
                              "dist/metadata.json is not valid JSON"),
    "corrupt-json": (lambda c, m: (c / "state.json").write_text('{"state": {"step": 4,'),
                     "state.json is not valid JSON (Expecting property name"),
    "extra-json": (lambda c, m: (c / "state.json").write_text((c / "state.json").read_text() + '\n{"step": 99}\n'),
                   "state.json is not valid JSON (Extra data at line"),
    "not-an-object": (lambda c, m: (c / "state.json").write_text("[1, 2]"), "state.json: the file is not a JSON object"),
    "missing-key": (lambda c, m: _edit_state(c, lambda s: s["state"].pop("consumed_samples")),
                    "state.json: no key state.consumed_samples"),
    "missing-top-key": (lambda c, m: _edit_state(c, lambda s: s.pop("world_size")), "state.json: no key world_size"),
    "wrong-type": (lambda c, m: _edit_state(c, lambda s: s["state"].update(step="4")),
                   "state.json: state.step is '4', expected int"),
    "wrong-optimizer-type": (lambda c, m: _edit_state(c, lambda s: s["optimizer"].update(sharded_over_data_parallel=1)),
                             "state.json: optimizer.sharded_over_data_parallel is 1, expected bool"),
    "unknown-key": (lambda c, m: _edit_state(c, lambda s: s["state"].update(evil=1)),
                    "state.json: unknown key state.evil"),
    "bad-topology": (lambda c, m: _edit_state(c, lambda s: s.update(tp_size=3)),
                     "state.json: world_size 1 is not tp_size 3 x pp_size 1 x dp_size 1"),
    "name-mismatch": (lambda c, m: _edit_state(c, lambda s: s["state"].update(step=2)),
                      "its name does not match state.json, which describes megatron_gpt_sft--step=000002"),
    "no-state-json": (lambda c, m: (c / "state.json").unlink(), "no state.json (an interrupted save"),
    "future-format": (lambda c, m: _edit_state(c, lambda s: s.update(format=3, written_by="sft-trainer 9.0")),
                      "checkpoint format 3 (written by sft-trainer 9.0); this sft resumes format 2"),
}


@pytest.mark.parametrize("kind", DAMAGE)
def test_verify_names_the_problem_and_runs_nothing(interrupted, tmp_path, kind):
    from sft_trainer.checkpoint_verify import verify

    checkpoint = tmp_path / checkpoints(interrupted)[-1].name
    shutil.copytree(checkpoints(interrupted)[-1], checkpoint)
    assert verify(checkpoint) is None
    damage, expected = DAMAGE[kind]
    marker = tmp_path / "marker"
    damage(checkpoint, marker)
    problem = verify(checkpoint)
    assert problem is not None and problem.startswith(expected), problem
    assert "\n" not in problem
    assert not marker.exists()


def test_the_payload_is_live(tmp_path):
    """The hostile files above are real: an unrestricted loader runs them."""
    marker = tmp_path / "marker"
    pickle.loads(pickle.dumps(Payload(marker))).close()
    assert marker.exists()


@pytest.mark.parametrize("kind", ["pickle-in-dist", "pickle-as-metadata", "raw-pickle-rng", "truncated",
                                  "no-optimizer-state", "corrupt-json", "missing-key", "wrong-type"])
def test_resume_skips_a_damaged_newest_checkpoint(tiny_nemo, train_config, interrupted, baseline, tmp_path, capsys,
                                                  kind):
    from sft_trainer.run import train

    run = tmp_path / "run"
    shutil.copytree(interrupted, run)
    good, damaged = checkpoints(run)
    damage, expected = DAMAGE[kind]
    marker = tmp_path / "marker"
    damage(damaged, marker)
    evidence = snapshot(damaged)
    capsys.readouterr()
    cfg = train_config(tiny_nemo, run, *COMMON, "exp_manager.checkpoint_callback_params.save_top_k=1")
    result = train(cfg, plugin_manager())
    out = capsys.readouterr().out
    reports = [line for line in out.splitlines() if "skipping checkpoint" in line]
    assert len(reports) == 1, out
    assert reports[0].startswith(f"warning: skipping checkpoint {damaged}: {expected}"), reports[0]
    assert f"resuming from {good.name} (step 2)" in out
    assert result.state.step == 6
    assert not marker.exists()
    # the same trajectory as the uninterrupted run, each step in metrics.jsonl once
    assert losses(run) == baseline
    assert [r["step"] for r in records(run) if "train/loss" in r] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in records(run) if "validation/loss" in r] == [2, 4, 6]
    # the damaged directory was re-saved under its name: moved aside, not deleted, unchanged
    assert snapshot(damaged.with_name(damaged.name + ".unverified")) == evidence


def test_a_fake_newest_directory_is_skipped_and_kept(tiny_nemo, train_config, interrupted, baseline, tmp_path, capsys):
    """A directory named like a newer checkpoint holding only a consistent state.json."""
    from sft_trainer.run import train
    from sft_trainer.train_state import TrainState, checkpoint_name

    run = tmp_path / "run"
    shutil.copytree(interrupted, run)
    newest = checkpoints(run)[-1]
    meta = json.loads((newest / "state.json").read_text())
    meta["state"].update(step=99, consumed_samples=792, val_loss=None)
    fake = run / "checkpoints" / checkpoint_name(TrainState(**meta["state"]))
    fake.mkdir()
    (fake / "state.json").write_text(json.dumps(meta))
    capsys.readouterr()
    cfg = train_config(tiny_nemo, run, *COMMON, "exp_manager.checkpoint_callback_params.save_top_k=0")
    train(cfg, plugin_manager())
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if "skipping" in line] == [
        f"warning: skipping checkpoint {fake}: {RNG}: missing"]
    assert f"resuming from {newest.name} (step 4)" in out
    assert losses(run) == baseline
    # save_top_k=0 pruned every other checkpoint but the newest; the fake one is not the pruner's to delete
    assert fake.is_dir() and [p.name for p in checkpoints(run)][-1] == fake.name
    assert len(checkpoints(run)) == 2


def test_no_checkpoint_that_verifies_is_an_error_not_a_fresh_start(tiny_nemo, train_config, interrupted, tmp_path):
    from sft_trainer.checkpoint import CheckpointError
    from sft_trainer.run import train

    run = tmp_path / "run"
    shutil.copytree(interrupted, run)
    for checkpoint in checkpoints(run):
        _truncate(checkpoint / DISTCP)
    before = (run / "metrics.jsonl").read_bytes()
    with pytest.raises(CheckpointError, match=r"^none of the 2 checkpoints in .* can be resumed from"):
        train(train_config(tiny_nemo, run, *COMMON), plugin_manager())
    assert len(checkpoints(run)) == 2
    assert (run / "metrics.jsonl").read_bytes() == before


class KillAfterValidation:
    """Killed after step 4's metrics (train and validation lines) are written, before its checkpoint."""

    @hookimpl
    def sft_on_validation_end(self, state, metrics):
        if state.step == 4:
            raise Killed()


def test_metrics_hold_each_step_once_after_a_kill_between_metrics_and_checkpoint(
        tiny_nemo, train_config, baseline, tmp_path, capsys):
    from sft_trainer.run import train

    run = tmp_path / "run"
    with pytest.raises(Killed):
        train(train_config(tiny_nemo, run, *COMMON), plugin_manager(KillAfterValidation()))
    assert [r["step"] for r in records(run)] == [1, 2, 2, 3, 4, 4]  # step 4 logged ...
    assert len(checkpoints(run)) == 1  # ... but only step 2 saved
    with (run / "metrics.jsonl").open("a") as handle:
        handle.write('{"step": 5, "train/lo')  # and a line cut short by a second kill
    capsys.readouterr()
    train(train_config(tiny_nemo, run, *COMMON), plugin_manager())
    out = capsys.readouterr().out
    assert f"{run / 'metrics.jsonl'}: dropped 4 line(s) after step 2; those steps run again" in out
    assert [r["step"] for r in records(run) if "train/loss" in r] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in records(run) if "validation/loss" in r] == [2, 4, 6]
    assert losses(run) == baseline


def test_trim_keeps_earlier_steps_byte_for_byte(tmp_path):
    from sft_trainer.loggers.jsonl import trim_after

    path = tmp_path / "metrics.jsonl"
    lines = ['{"step": 1, "train/loss": 5.0}', '{"step": 2, "validation/loss": "nan"}', '{"step": 3, "x": 1}',
             'not json', '[1, 2]', '{"no_step": 1}', '{"step": 2, "train/loss": 4.5}']
    path.write_text("\n".join(lines) + "\n")
    assert trim_after(path, 2) == 4
    assert path.read_text() == "\n".join([lines[0], lines[1], lines[6]]) + "\n"
    assert trim_after(path, 2) == 0
    assert not list(tmp_path.glob("*.partial"))


def _format_1(checkpoint: Path) -> None:
    """``checkpoint`` rewritten as the per-rank torch.save layout of earlier versions (format 1)."""
    meta = json.loads((checkpoint / "state.json").read_text())
    for key in ("format", "written_by", "dp_size", "optimizer", "model"):
        meta.pop(key)
    shutil.rmtree(checkpoint / "dist")
    torch.save([{"embedding.word_embeddings.weight": torch.zeros(2)}], checkpoint / "model_tp00_pp000.pt")
    torch.save({"state": {}, "param_groups": []}, checkpoint / "optim_tp00_pp000.pt")
    (checkpoint / "state.json").write_text(json.dumps(meta))


def test_a_checkpoint_of_the_earlier_layout_is_refused_in_one_line(tiny_nemo, train_config, interrupted, tmp_path,
                                                                   capsys):
    from sft_trainer.checkpoint import CheckpointError
    from sft_trainer.checkpoint_inspect import describe_checkpoint
    from sft_trainer.checkpoint_verify import LEGACY, verify
    from sft_trainer.run import train

    run = tmp_path / "run"
    shutil.copytree(interrupted, run)
    old = checkpoints(run)[-1]
    _format_1(old)
    assert verify(old) == LEGACY
    assert LEGACY.startswith("written by an earlier sft (checkpoint format 1: per-rank torch.save files")
    info = describe_checkpoint(old)
    assert (info["format"], info["verifies"], info["step"]) == (1, False, 4)
    assert info["topology"]["data_parallel_size"] == 1 and info["optimizer"]["sharded_over_data_parallel"] is False

    with pytest.raises(CheckpointError) as named:
        train(train_config(tiny_nemo, tmp_path / "other", *COMMON, f"model.resume_from_checkpoint={old}"),
              plugin_manager())
    assert str(named.value) == f"model.resume_from_checkpoint={old} cannot be resumed from: {LEGACY}"
    shutil.rmtree(checkpoints(run)[0])  # only the old-layout checkpoint is left
    capsys.readouterr()
    with pytest.raises(CheckpointError, match=r"^none of the 1 checkpoints in .* can be resumed from"):
        train(train_config(tiny_nemo, run, *COMMON), plugin_manager())
    assert f"warning: skipping checkpoint {old}: {LEGACY}" in capsys.readouterr().out
    assert old.is_dir()  # refused, never deleted


def test_a_checkpoint_of_another_optimizer_kind_is_refused_in_one_line(tiny_nemo, train_config, interrupted, tmp_path):
    from sft_trainer.checkpoint import CheckpointError
    from sft_trainer.run import train

    saved = checkpoints(interrupted)[-1]
    with pytest.raises(CheckpointError) as info:
        train(train_config(tiny_nemo, tmp_path / "run", *COMMON, f"model.resume_from_checkpoint={saved}",
                           "model.optim.name=adamw"), plugin_manager())
    assert str(info.value) == (f"{saved} holds distributed optimizer state (model.optim.name=distributed_fused_adam), "
                               "which model.optim.name=adamw cannot read; resume with "
                               "model.optim.name=distributed_fused_adam")


def test_every_rank_checks_what_it_loads(tiny_nemo, train_config, interrupted, tmp_path, monkeypatch):
    """Rank 0's verification may have seen another copy (a node's own disk) or an earlier state of
    the files: the loader checks its own before megatron unpickles anything."""
    import sft_trainer.resume
    from sft_trainer.checkpoint import CheckpointError
    from sft_trainer.run import train

    checkpoint = tmp_path / checkpoints(interrupted)[-1].name
    shutil.copytree(checkpoints(interrupted)[-1], checkpoint)
    marker = tmp_path / "marker"
    _byte_entry(checkpoint, [Payload(marker)])
    monkeypatch.setattr(sft_trainer.resume, "verify", lambda path: None)  # rank 0 saw nothing wrong
    with pytest.raises(CheckpointError, match=r": dist: refusing checkpoint entry common_state"):
        train(train_config(tiny_nemo, tmp_path / "run", *COMMON, f"model.resume_from_checkpoint={checkpoint}"),
              plugin_manager())
    assert not marker.exists()
