"""The reference's remaining training keys in real (tiny, CPU) runs: two files mixed by weight with
short samples dropped, resumed exactly after a kill; ``trainer.max_time`` on a fake clock;
``model.resume_from_checkpoint``; ``model.save_nemo_on_validation_end``."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
from pathlib import Path

import pluggy
import pytest

hookimpl = pluggy.HookimplMarker("sft")
REPO = Path(__file__).resolve().parents[3]
RNG = "rng_rank00000.pt"


class Killed(BaseException):
    """Stands in for a kill: the run stops at once (event hooks mute plain Exceptions)."""


class KillAfterSave:
    def __init__(self, step: int):
        self.step = step

    @hookimpl
    def sft_on_save(self, state, path):
        if state.step == self.step:
            raise Killed(path)


class FakeClock:
    """``sft_trainer.deadline``'s clock, moved only by the run's events: a step takes ``steps[n]``
    seconds (10 by default), a checkpoint save 5, and ``start`` passes before the first step."""

    def __init__(self, monkeypatch, steps: dict[int, float] | None = None, start: float = 0.0):
        import sft_trainer.deadline as deadline

        self.now, self.steps, self.start = 0.0, steps or {}, start
        monkeypatch.setattr(deadline, "monotonic", lambda: self.now)

    @hookimpl
    def sft_on_train_start(self, state, model):
        self.now += self.start

    @hookimpl
    def sft_on_step_end(self, state, metrics):
        self.now += self.steps.get(state.step, 10.0)

    @hookimpl
    def sft_on_save(self, state, path):
        self.now += 5.0


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


def step_of(checkpoint: Path) -> int:
    return int(checkpoint.name.split("step=")[1][:6])


@pytest.fixture(scope="module")
def mixed(tiny_nemo, train_config, tmp_path_factory):
    """``mixed(run_dir, *overrides)``: the example data split into two files (300 and 700 records)
    mixed half and half, samples under 12 tokens dropped; 6 steps, checkpoints at 2, 4, 6."""
    work = tmp_path_factory.mktemp("mixed-data")
    lines = (REPO / "examples/data/train.jsonl").read_text().splitlines(keepends=True)
    first, second = work / "first.jsonl", work / "second.jsonl"
    first.write_text("".join(lines[:300]))
    second.write_text("".join(lines[300:]))

    def build(run_dir: Path, *overrides: str):
        return train_config(tiny_nemo, run_dir, f"model.data.train_ds.file_path=[{first},{second}]",
                            "model.data.train_ds.concat_sampling_probabilities=[0.5,0.5]",
                            "model.data.train_ds.min_seq_length=12", "trainer.sft.max_steps=6", *overrides)

    build.files = (first, second)
    return build


@pytest.fixture(scope="module")
def baseline(mixed, tmp_path_factory):
    """The uninterrupted mixed run: (run directory, what it printed)."""
    from sft_trainer.run import train

    run = tmp_path_factory.mktemp("mixed-baseline") / "run"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        train(mixed(run), plugin_manager())
    return run, out.getvalue()


def test_mixed_files_report_dropped_samples_and_resume_exactly(mixed, baseline, tmp_path):
    from sft_trainer.run import train

    run_dir, printed = baseline
    first, second = mixed.files
    drops = {}
    for name in (first, second):
        (line,) = [x for x in printed.splitlines() if x.startswith(f"model.data.train_ds ({name}): ")]
        dropped, total = line.split(": ", 1)[1].split(" samples dropped")[0].split(" of ")
        assert line.endswith(f"samples dropped (shorter than min_seq_length (12 tokens): {dropped})"), line
        drops[name] = (int(dropped), int(total))
    assert drops[first][1] == 300 and drops[second][1] == 700 and all(d > 0 for d, _ in drops.values())
    meta = json.loads((checkpoints(run_dir)[0] / "state.json").read_text())
    kept = [total - dropped for dropped, total in drops.values()]
    assert meta["sampler"] == {"epoch": 0, "consumed_samples": 16, "sizes": kept, "weights": [0.5, 0.5]}

    run = tmp_path / "run"
    with pytest.raises(Killed):
        train(mixed(run), plugin_manager(KillAfterSave(4)))
    train(mixed(run), plugin_manager())
    assert losses(run) == losses(run_dir)
    assert [r["step"] for r in records(run) if "train/loss" in r] == [1, 2, 3, 4, 5, 6]


def test_max_time_saves_and_stops_before_the_limit_then_resumes(mixed, baseline, tmp_path, monkeypatch, capsys):
    from sft_trainer.run import train

    run = tmp_path / "run"
    # steps take 10 s, step 3 takes 20 s, saves 5 s, checkpoints every 2 steps; limit 55 s:
    # after step 2 (20 s): 10 + 10 + 10 (a save not yet measured costs a step) more fit (50): go on, save (25);
    # after step 3 (45 s): 20 (longest step) + 5 (save) more would end at 70: save now (50) and stop
    clock = FakeClock(monkeypatch, steps={3: 20.0})
    result = train(mixed(run, "trainer.max_time={minutes: 0, seconds: 55}"), plugin_manager(clock))
    assert result.state.extra["stopped"] == "max_time" and result.state.step == 3
    assert clock.now == 50.0
    assert [step_of(c) for c in checkpoints(run)] == [2, 3]
    assert result.nemo_path is None and not (run / "checkpoints" / "megatron_gpt_sft.nemo").exists()
    assert ("trainer.max_time={'minutes': 0, 'seconds': 55}: stopped after step 3, before one more step and a "
            "checkpoint could pass the limit; run the same command again to resume") in capsys.readouterr().out

    result = train(mixed(run), plugin_manager())  # the next job, without the limit
    assert result.state.step == 6 and "stopped" not in result.state.extra
    assert losses(run) == losses(baseline[0])
    assert result.nemo_path is not None and result.nemo_path.is_file()


def test_max_time_spent_before_the_first_step_stops_without_training(mixed, tmp_path, monkeypatch):
    from sft_trainer.run import train

    run = tmp_path / "run"
    result = train(mixed(run, "trainer.max_time='00:00:01:00'"), plugin_manager(FakeClock(monkeypatch, start=61.0)))
    assert result.state.extra["stopped"] == "max_time" and result.state.step == 0
    assert checkpoints(run) == [] and result.nemo_path is None


def test_resume_from_a_named_checkpoint_instead_of_the_newest(mixed, baseline, tmp_path, capsys):
    from sft_trainer.run import train

    run = tmp_path / "run"
    shutil.copytree(baseline[0], run)  # its newest checkpoint is step 6: the run would be finished
    named = checkpoints(run)[0]
    assert step_of(named) == 2
    capsys.readouterr()
    result = train(mixed(run, f"model.resume_from_checkpoint={named}"), plugin_manager())
    assert f"resuming from {named.name} (step 2) (model.resume_from_checkpoint)" in capsys.readouterr().out
    assert result.state.step == 6
    assert losses(run) == losses(baseline[0])
    assert [r["step"] for r in records(run) if "train/loss" in r] == [1, 2, 3, 4, 5, 6]


def test_a_named_checkpoint_that_does_not_verify_is_one_line(mixed, baseline, tmp_path):
    from sft_trainer.checkpoint import CheckpointError
    from sft_trainer.run import train

    damaged = tmp_path / checkpoints(baseline[0])[1].name
    shutil.copytree(checkpoints(baseline[0])[1], damaged)
    (damaged / RNG).write_bytes((damaged / RNG).read_bytes()[:100])
    run = tmp_path / "run"
    with pytest.raises(CheckpointError) as info:
        train(mixed(run, f"model.resume_from_checkpoint={damaged}"), plugin_manager())
    assert str(info.value) == (f"model.resume_from_checkpoint={damaged} cannot be resumed from: {RNG}: truncated "
                               f"or corrupt (not a complete torch zip archive)")
    with pytest.raises(CheckpointError, match=r"^model.resume_from_checkpoint=\S+ cannot be resumed from: not a "
                                              r"checkpoint directory name$"):
        train(mixed(run, f"model.resume_from_checkpoint={tmp_path}"), plugin_manager())
    assert not (run / "checkpoints").exists() or checkpoints(run) == []


class NemoAtEachSave:
    """The exported .nemo's digest as each checkpoint is saved (None: not there yet)."""

    def __init__(self, path: Path):
        self.path, self.seen = path, {}

    @hookimpl
    def sft_on_save(self, state, path):
        self.seen[state.step] = hashlib.sha256(self.path.read_bytes()).hexdigest() if self.path.exists() else None


def test_a_nemo_is_written_at_each_checkpoint_after_a_validation(tiny_nemo, train_config, tmp_path, capsys):
    from sft_model import read_config
    from sft_trainer.run import train

    run = tmp_path / "run"
    nemo = run / "checkpoints" / "megatron_gpt_sft.nemo"
    watch = NemoAtEachSave(nemo)
    cfg = train_config(tiny_nemo, run, "trainer.sft.save_interval=1", "model.save_nemo_on_validation_end=true",
                       "exp_manager.checkpoint_callback_params.save_nemo_on_train_end=false")
    result = train(cfg, plugin_manager(watch))
    assert result.nemo_path is None  # no export at the end: the one after step 4's validation is there
    # checkpoints at every step, validations at 2 and 4: the .nemo appears at 2, is kept at 3, replaced at 4
    assert watch.seen[1] is None and watch.seen[2] is not None
    assert watch.seen[3] == watch.seen[2] != watch.seen[4]
    assert hashlib.sha256(nemo.read_bytes()).hexdigest() == watch.seen[4]
    assert read_config(nemo).data["train_ds"]["max_seq_length"] == 64
    assert sorted(p.name for p in nemo.parent.iterdir() if not p.name.startswith("megatron_gpt_sft--")) == [nemo.name]
    out = capsys.readouterr().out
    assert [line.split(":")[0] for line in out.splitlines() if "validated model" in line] == ["step 2", "step 4"]
