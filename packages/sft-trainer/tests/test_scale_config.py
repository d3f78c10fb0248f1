"""Scale keys as read from a config (optimizer sharding, sequence parallelism, activation
recomputation) and in a one-process run: recomputation trains exactly as without it."""

from __future__ import annotations

import json

import pytest
from sft_trainer.config import ConfigError
from sft_trainer.config.loading import build_config

PATHS = ["model.restore_from_path=base.nemo", "model.data.validation_ds.file_path=val.jsonl"]
FULL = ["model.activations_checkpoint_granularity=full", "model.activations_checkpoint_method=block",
        "model.activations_checkpoint_num_layers=1"]


def load(*overrides: str):
    return build_config({}, [*PATHS, *overrides])


def test_optimizer_names_choose_sharded_or_replicated_state():
    from sft_trainer.optim import uses_distributed_optimizer

    assert uses_distributed_optimizer(load())  # distributed_fused_adam: the reference's default and ours
    assert uses_distributed_optimizer(load("model.optim.name=mcore_distributed_optim"))
    for name in ("adam", "adamw", "fused_adam"):
        assert not uses_distributed_optimizer(load(f"model.optim.name={name}"))


def test_recomputation_and_sequence_parallel_reach_the_model_overrides():
    cfg = load("model.tensor_model_parallel_size=2", "model.sequence_parallel=true", *FULL)
    overrides = cfg.model.model_overrides()
    assert {k: overrides[k] for k in ("sequence_parallel", "activations_checkpoint_granularity",
                                      "activations_checkpoint_method", "activations_checkpoint_num_layers")} == {
        "sequence_parallel": True, "activations_checkpoint_granularity": "full",
        "activations_checkpoint_method": "block", "activations_checkpoint_num_layers": 1}
    assert not cfg.unused and not cfg.warnings
    selective = load("model.activations_checkpoint_granularity=selective").model.model_overrides()
    assert (selective["activations_checkpoint_granularity"], selective["activations_checkpoint_num_layers"]) == (
        "selective", None)


def test_settings_without_effect_are_said_once():
    cfg = load("model.sequence_parallel=true", "model.activations_checkpoint_method=uniform")
    assert cfg.model.model_overrides()["sequence_parallel"] is False  # TP=1: a no-op, not an error
    assert cfg.warnings == [
        "model.sequence_parallel=true has no effect at tensor_model_parallel_size=1 (there are no tensor-parallel "
        "ranks to split the sequence over)",
        "model.activations_checkpoint_method='uniform' has no effect with activations_checkpoint_granularity=None "
        "(it applies to 'full')"]


@pytest.mark.parametrize(("overrides", "message"), [
    (["model.activations_checkpoint_granularity=partial"],
     r"^config key 'model.activations_checkpoint_granularity' must be one of None, 'selective', 'full', got 'partial'$"),
    (["model.activations_checkpoint_granularity=full", "model.activations_checkpoint_num_layers=1"],
     r"^config key 'model.activations_checkpoint_method' must be 'uniform' or 'block' with "
     r"activations_checkpoint_granularity 'full', got None$"),
    (["model.activations_checkpoint_granularity=full", "model.activations_checkpoint_method=uniform"],
     r"^config key 'model.activations_checkpoint_num_layers' must be an integer >= 1 with"),
    (["model.activations_checkpoint_method=diagonal"], r"'model.activations_checkpoint_method' must be one of None"),
    (["model.activations_checkpoint_num_layers=0"], r"'model.activations_checkpoint_num_layers' must be an integer >= 1"),
    (["model.sequence_parallel=maybe"], r"^config key 'model.sequence_parallel' must be bool, got 'maybe'$"),
])
def test_bad_scale_settings_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load(*overrides)


def _losses(run_dir) -> dict[int, float]:
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["train/loss"] for r in lines if "train/loss" in r}


@pytest.mark.parametrize("settings", [FULL, ["model.activations_checkpoint_granularity=selective"]],
                         ids=["full-block", "selective"])
def test_a_run_with_recomputation_trains_as_one_without(tiny_nemo, short_train_config, tmp_path, settings):
    from sft_core import get_plugin_manager
    from sft_trainer.run import train

    # (recomputed dropout masks: sft-model's test_memory_settings; two runs in one process share RNG streams)
    common = ("model.optim.name=adam",)
    train(short_train_config(tiny_nemo, tmp_path / "plain", *common), get_plugin_manager(load_entrypoints=False))
    train(short_train_config(tiny_nemo, tmp_path / "recomputed", *common, *settings),
          get_plugin_manager(load_entrypoints=False))
    plain, recomputed = _losses(tmp_path / "plain"), _losses(tmp_path / "recomputed")
    assert sorted(plain) == [1, 2]
    for step, loss in plain.items():
        assert abs(recomputed[step] - loss) <= 1e-6, (step, recomputed[step], loss)


def test_sequence_parallel_rows_split_evenly_over_tensor_parallel_ranks():
    from types import SimpleNamespace

    from sft_core import SftError
    from sft_data.dataset import Collator
    from sft_trainer.run_data import rows_split_evenly

    padded, packed = SimpleNamespace(collate=Collator()), SimpleNamespace(collate=Collator(pack_size=96))
    rows_split_evenly([("model.data.train_ds", padded), ("model.data.validation_ds", None)], 32)
    assert padded.collate.multiple_of == 32  # rows padded to the longest, rounded up to a multiple of TP
    rows_split_evenly([("model.data.train_ds", packed)], 4)
    with pytest.raises(SftError, match=r"^model.data.train_ds: rows of 96 positions \(the pack size or max_seq_length\) "
                                       r"cannot be split evenly over tensor_model_parallel_size=64"):
        rows_split_evenly([("model.data.train_ds", packed)], 64)
