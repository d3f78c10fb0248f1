"""Run by test_scale.py under torchrun as two gloo processes: several training runs in one launch.

argv: OUT_DIR BASE_NEMO ONE_PROCESS_CHECKPOINT. Each phase trains with ``sft_trainer.run.train`` in
its own run directory under OUT_DIR, at its own TP/PP, and rank 0 adds the phase's losses to
OUT_DIR/results.json as soon as it ends. The last phase (TP=2, where both ranks write shards) is
killed: rank 1 SIGKILLs itself while writing the step-6 checkpoint's dist/ files, and torchrun
ends the launch.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import torch
import torch.distributed as dist

REPO = Path(__file__).resolve().parents[3]
STEPS = 6


def settings(run_dir: Path, nemo: str, *overrides: str) -> list[str]:
    return [
        f"model.restore_from_path={nemo}", f"exp_manager.explicit_log_dir={run_dir}",
        f"model.data.train_ds.file_path={REPO / 'examples/data/train.jsonl'}",
        f"model.data.validation_ds.file_path={REPO / 'examples/data/val.jsonl'}",
        "model.data.train_ds.max_seq_length=64", "model.data.validation_ds.max_seq_length=64",
        "trainer.precision=32", "model.micro_batch_size=4", "model.global_batch_size=8",
        f"trainer.sft.max_steps={STEPS}", "trainer.sft.val_check_interval=3", "trainer.sft.save_interval=3",
        "trainer.sft.limit_val_batches=1", "model.optim.lr=2e-3", "model.optim.sched.warmup_steps=0",
        "model.optim.sched.constant_steps=0", "exp_manager.checkpoint_callback_params.save_top_k=-1",
        "exp_manager.checkpoint_callback_params.save_nemo_on_train_end=false", *overrides,
    ]


def losses(run_dir: Path) -> dict[int, float]:
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["train/loss"] for r in lines if "train/loss" in r}


def optimizer_state_bytes(nemo: str, distributed: bool) -> int:
    """This rank's optimizer state after one step of the base model at DP=2."""
    from sft_core import get_plugin_manager
    from sft_data.registries import DataRegistries
    from sft_model.parallel import initialize
    from sft_trainer.config.loading import build_config
    from sft_trainer.model_io import load_base_model
    from sft_trainer.optim import build_optimizer, optimizer_state_bytes, wrap_ddp

    initialize(1, 1)
    cfg = build_config({}, ["trainer.precision=32", f"model.optim.name={'distributed_fused_adam' if distributed else 'adam'}"])
    base = load_base_model(nemo, DataRegistries.from_plugin_manager(get_plugin_manager(load_entrypoints=False)),
                           dtype=torch.float32, overrides={})
    chunks = wrap_ddp(base.chunks, distributed)
    optimizer = build_optimizer(chunks, cfg, torch.float32, distributed)
    ids = torch.randint(0, 500, (2, 32), generator=torch.Generator().manual_seed(dist.get_rank()))
    chunks[0](ids, torch.arange(32).expand(2, 32), None, labels=ids.roll(-1, 1)).sum().backward()
    chunks[0].finish_grad_sync()
    optimizer.step()
    return optimizer_state_bytes(optimizer)


def kill_rank1_inside_dist_save(step: int) -> None:
    """From now on rank 1 dies (SIGKILL) when it writes a tensor of step ``step``'s dist/ files."""
    if dist.get_rank() != 1:
        return
    real = torch.save

    def save(obj, f, *args, **kwargs):
        name = str(getattr(getattr(f, "raw", f), "name", f))
        if f"step={step:06d}" in name and "/dist/" in name:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(obj, f, *args, **kwargs)

    torch.save = save


def main(out: Path, nemo: str, one_process_checkpoint: str) -> None:
    from sft_core import get_plugin_manager
    from sft_model.parallel import destroy_model_parallel_only
    from sft_trainer.config.loading import build_config
    from sft_trainer.run import train

    dist.init_process_group("gloo")
    results: dict = {}
    resume = f"model.resume_from_checkpoint={one_process_checkpoint}"
    phases = {
        "dp2-replicated": ["model.optim.name=adam", "exp_manager.create_checkpoint_callback=false"],
        "dp2-distributed": [],
        "tp2": ["model.tensor_model_parallel_size=2"],
        "tp2-sequence-parallel": ["model.tensor_model_parallel_size=2", "model.sequence_parallel=true",
                                  "exp_manager.create_checkpoint_callback=false"],
        "pp2": ["model.pipeline_model_parallel_size=2"],
        "from-one-process-dp2": [resume],
        "from-one-process-tp2": [resume, "model.tensor_model_parallel_size=2"],
        "from-one-process-pp2": [resume, "model.pipeline_model_parallel_size=2"],
    }
    for name, overrides in phases.items():
        run_dir = out / name
        train(build_config({}, settings(run_dir, nemo, *overrides)), get_plugin_manager(load_entrypoints=False))
        destroy_model_parallel_only()
        results[name] = {"run_dir": str(run_dir), "losses": losses(run_dir)}
        if dist.get_rank() == 0:
            (out / "results.json").write_text(json.dumps(results))
    results["optimizer_state_bytes"] = {}
    for distributed in (False, True):
        mine = torch.tensor([optimizer_state_bytes(nemo, distributed)], dtype=torch.int64)
        every = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
        dist.all_gather(every, mine)
        results["optimizer_state_bytes"]["distributed" if distributed else "replicated"] = [int(t) for t in every]
        destroy_model_parallel_only()
    if dist.get_rank() == 0:
        (out / "results.json").write_text(json.dumps(results))
    kill_rank1_inside_dist_save(STEPS)
    train(build_config({}, settings(out / "killed", nemo, "model.tensor_model_parallel_size=2")),
          get_plugin_manager(load_entrypoints=False))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3])
