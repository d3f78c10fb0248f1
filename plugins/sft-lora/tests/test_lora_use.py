"""An adapter-only .nemo used as it is: `sft generate ADAPTER [--base BASE]` answers as the merged
model does, the base the run recorded is found without --base, a missing base is one line saying
what the file is and how to use it, and `sft convert nemo-to-hf ADAPTER --base BASE` writes the
merged model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[3]
LORA = ["model.peft.peft_scheme=lora", "model.peft.lora_tuning.target_modules=[all]",
        "model.peft.lora_tuning.adapter_dim=4", "model.peft.lora_tuning.alpha=16"]


@pytest.fixture(scope="module")
def cli():
    from sft_cli.app import create_cli
    from sft_core import get_plugin_manager

    return create_cli(get_plugin_manager())  # sft-lora comes in through its entry point, as for a user


def sft(cli, *args):
    from click.testing import CliRunner

    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def lora_run(tiny_nemo, tmp_path_factory, cli):
    """(base, adapter, merged): a 6-step LoRA run on a copy of the tiny base, and its `sft merge-lora`."""
    from sft_trainer.config.loading import build_config
    from sft_trainer.run import train

    work = tmp_path_factory.mktemp("lora-use")
    base = work / "base.nemo"
    shutil.copyfile(tiny_nemo, base)
    cfg = build_config({}, [
        f"model.restore_from_path={base}", f"exp_manager.explicit_log_dir={work / 'run'}",
        f"model.data.train_ds.file_path={REPO / 'examples/data/train.jsonl'}",
        f"model.data.validation_ds.file_path={REPO / 'examples/data/val.jsonl'}",
        "model.data.train_ds.max_seq_length=64", "model.data.validation_ds.max_seq_length=64",
        "trainer.precision=32", "model.micro_batch_size=4", "model.global_batch_size=4", "trainer.sft.max_steps=6",
        "trainer.sft.val_check_interval=6", "trainer.sft.limit_val_batches=1", "model.optim.lr=3e-2",
        "model.optim.sched.warmup_steps=0", "model.optim.sched.constant_steps=0",
        "exp_manager.create_tensorboard_logger=false", "exp_manager.checkpoint_callback_params.save_top_k=1", *LORA,
    ])
    adapter = train(cfg).nemo_path
    merged = work / "merged.nemo"
    result = sft(cli, "merge-lora", base, adapter, merged)
    assert result.exit_code == 0, result.output
    return base, adapter, merged


@pytest.fixture(scope="module")
def prompts(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    rows = [json.loads(line) for line in (REPO / "examples/data/val.jsonl").read_text().splitlines()[:8]]
    path.write_text("".join(json.dumps({"input": r["input"], "output": r["output"]}) + "\n" for r in rows))
    return path


def answers(cli, model, prompts, *extra) -> list[str]:
    result = sft(cli, "generate", model, "--input", prompts, "--max-new-tokens", "10", *extra)
    assert result.exit_code == 0, result.output
    return [json.loads(line)["generated"] for line in result.stdout.splitlines()]


def test_the_adapter_with_its_base_answers_as_the_merged_model(cli, lora_run, prompts):
    base, adapter, merged = lora_run
    from sft_model import read_config

    assert read_config(adapter).extra["restore_from_path"] == str(base.resolve())  # the run recorded its base
    want = answers(cli, merged, prompts)
    assert answers(cli, adapter, prompts, "--base", base) == want
    assert answers(cli, adapter, prompts) == want  # the recorded base, found without --base
    assert answers(cli, base, prompts) != want  # the adapter is really applied
    one = sft(cli, "generate", adapter, "--prompt", "What colour is snow?", "--max-new-tokens", "10")
    assert one.exit_code == 0 and one.stdout == sft(cli, "generate", merged, "--prompt", "What colour is snow?",
                                                    "--max-new-tokens", "10").stdout


def test_without_a_usable_base_one_line_says_what_it_is_and_how_to_use_it(cli, lora_run, prompts, tmp_path):
    base, adapter, _ = lora_run
    moved = base.with_name("moved.nemo")
    base.rename(moved)
    try:
        result = sft(cli, "generate", adapter, "--prompt", "hello")
        converted = sft(cli, "convert", "nemo-to-hf", adapter, tmp_path / "hf")
    finally:
        moved.rename(base)
    expected = (f"Error: {adapter} is an adapter-only .nemo (lora adapters, no base weights; trained on "
                f"{base.resolve()}, which is missing or unreadable): give its base with --base BASE.nemo, or merge "
                f"them first: sft merge-lora BASE.nemo {adapter} MERGED.nemo\n")
    assert result.exit_code == 1 and result.stderr == expected
    assert converted.exit_code == 1 and converted.stderr == expected
    assert not (tmp_path / "hf").exists() and list(tmp_path.iterdir()) == []
    # --base on a model that has its own weights
    full = sft(cli, "generate", base, "--base", base, "--prompt", "hello")
    assert full.exit_code == 1
    assert full.stderr == (f"Error: {base} has its own weights (not an adapter-only .nemo); --base is only for "
                           f"adapters\n")


def test_an_adapter_without_a_recorded_base(cli, lora_run, tmp_path):
    """A reference (NeMo) adapter may record no base: the same one line, and --base still works."""
    import tarfile

    import yaml

    _, adapter, _ = lora_run
    src = tmp_path / "src"
    with tarfile.open(adapter) as tar:
        tar.extractall(src, filter="data")
    cfg = yaml.safe_load((src / "model_config.yaml").read_text())
    del cfg["restore_from_path"]
    (src / "model_config.yaml").write_text(yaml.safe_dump(cfg))
    result = sft(cli, "generate", src, "--prompt", "hello")
    assert result.exit_code == 1
    assert result.stderr == (f"Error: {src} is an adapter-only .nemo (lora adapters, no base weights; it does not "
                             f"record which base it was trained on): give its base with --base BASE.nemo, or merge "
                             f"them first: sft merge-lora BASE.nemo {src} MERGED.nemo\n")


def test_nemo_to_hf_of_an_adapter_writes_the_merged_model(cli, lora_run, tmp_path):
    from safetensors.torch import load_file

    base, adapter, merged = lora_run
    for source, out, extra in ((adapter, "from-adapter", ("--base", base)), (merged, "from-merged", ())):
        result = sft(cli, "convert", "nemo-to-hf", source, tmp_path / out, *extra)
        assert result.exit_code == 0, result.output

    def tensors(name):
        out = {}
        for shard in sorted((tmp_path / name).glob("*.safetensors")):
            out.update(load_file(shard))
        return out

    got, want = tensors("from-adapter"), tensors("from-merged")
    assert sorted(got) == sorted(want) and len(got) > 10
    for key in want:
        assert torch.allclose(got[key], want[key], rtol=0, atol=1e-6), key
    assert json.loads((tmp_path / "from-adapter/config.json").read_text()) == json.loads(
        (tmp_path / "from-merged/config.json").read_text())
    base_hf = sft(cli, "convert", "nemo-to-hf", base, tmp_path / "base-hf")
    assert base_hf.exit_code == 0
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(tensors("base-hf")[q], got[q])  # the adapter was folded in


def test_an_adapter_whose_peft_method_is_not_loaded(lora_run):
    from sft_core import get_plugin_manager
    from sft_data.registries import DataRegistries
    from sft_trainer.adapters import AdapterError
    from sft_trainer.generation.runner import Generator

    base, adapter, merged = lora_run
    pm = get_plugin_manager(load_entrypoints=False)  # as with SFT_DISABLE_PLUGINS=lora
    with pytest.raises(AdapterError) as caught:
        Generator(adapter, DataRegistries.from_plugin_manager(pm), pm=pm, base=base)
    assert str(caught.value) == (f"{adapter}: an adapter-only .nemo of PEFT method 'lora', which no loaded plugin "
                                 f"provides (unknown PEFT method 'lora' (available: none))")
    assert Generator(merged, DataRegistries.from_plugin_manager(pm), pm=pm).prompts is not None  # full: no plugin needed
