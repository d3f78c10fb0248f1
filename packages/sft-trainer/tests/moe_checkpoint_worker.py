"""Run by test_moe_checkpoints.py under torchrun as two gloo processes: MoE training checkpoints
under expert parallelism, in one launch.

argv: OUT_DIR BASE_NEMO. Phases, each a ``sft_trainer.run.train`` in OUT_DIR/<phase> (distributed
optimizer, checkpoints at steps 3 and 6): ``ep2`` trains 6 steps at EP=2 (DP=2); ``ep2-resumed``
resumes from its step-3 checkpoint at EP=2, ``ep1-refused`` tries to at EP=1; ``ep1`` trains 6
steps at EP=1 (DP=2) and ``tp2-resumed`` resumes from its step-3 checkpoint at TP=2 (sequence-
parallel, as MoE trains under TP). Rank 0 writes each phase's losses (or its error) to
OUT_DIR/results.json as soon as it ends.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch.distributed as dist

REPO = Path(__file__).resolve().parents[3]
STEPS = 6


def settings(run_dir: Path, nemo: str, *overrides: str) -> list[str]:
    return [
        f"model.restore_from_path={nemo}", f"exp_manager.explicit_log_dir={run_dir}",
        f"model.data.train_ds.file_path={REPO / 'examples/data/train.jsonl'}",
        f"model.data.validation_ds.file_path={REPO / 'examples/data/val.jsonl'}",
        "model.data.train_ds.max_seq_length=64", "model.data.validation_ds.max_seq_length=64",
        "trainer.precision=32", "model.micro_batch_size=2", "model.global_batch_size=8",
        f"trainer.sft.max_steps={STEPS}", "trainer.sft.val_check_interval=3", "trainer.sft.save_interval=3",
        "trainer.sft.limit_val_batches=1", "model.optim.lr=2e-3", "model.optim.sched.warmup_steps=0",
        "model.optim.sched.constant_steps=0", "exp_manager.checkpoint_callback_params.save_top_k=-1",
        "exp_manager.checkpoint_callback_params.save_nemo_on_train_end=false", *overrides,
    ]


def losses(run_dir: Path) -> dict[int, float]:
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: [r["train/loss"], r["train/moe_aux_loss"]] for r in lines if "train/loss" in r}


def main(out: Path, nemo: str) -> None:
    from sft_core import SftError, get_plugin_manager
    from sft_model.parallel import destroy_model_parallel_only
    from sft_trainer.config.loading import build_config
    from sft_trainer.run import train

    dist.init_process_group("gloo")
    results: dict = {}

    def resume(name: str) -> str:
        (found,) = (out / name / "checkpoints").glob("megatron_gpt_sft--step=000003-*")
        return f"model.resume_from_checkpoint={found}"

    phases = {"ep2": lambda: ["model.expert_model_parallel_size=2"],
              "ep2-resumed": lambda: ["model.expert_model_parallel_size=2", resume("ep2")],
              "ep1-refused": lambda: [resume("ep2")],
              "ep1": lambda: [],
              "tp2-resumed": lambda: ["model.tensor_model_parallel_size=2", resume("ep1")]}
    for name, overrides in phases.items():
        run_dir = out / name
        try:
            train(build_config({}, settings(run_dir, nemo, *overrides())), get_plugin_manager(load_entrypoints=False))
            results[name] = {"losses": losses(run_dir)}
        except SftError as exc:
            results[name] = {"error": str(exc)}
        destroy_model_parallel_only()
        if dist.get_rank() == 0:
            (out / "results.json").write_text(json.dumps(results))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
