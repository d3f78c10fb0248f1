"""Run by test_moe_training.py: one training step's forward-backward of a tiny Mixtral through the
trainer's ``train_step`` (megatron DDP, schedules, token-weighted loss, router aux loss).

``python moe_step_worker.py OUT DATA GBS MBS FIXED LAYOUT...``: LAYOUT is ``<TP>x<EP>``; for each in
turn (the world is whatever torchrun or nothing made it) the same base .nemo is loaded in that
layout (sequence-parallel under TP, as the trainer does) and OUT/<LAYOUT>-rank<r>.json gets the loss,
the aux loss and gradient norms of the parameters not split by TP (experts keyed by global index).
FIXED > 0 pads every row to that length (as under pipeline or expert parallelism); 0 pads to a
multiple of 16.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch


class NoOptimizer:
    def zero_grad(self):
        pass


def base_model(out: Path) -> Path:
    """The tiny Mixtral every layout loads (built and saved once, seeded, without any parallelism)."""
    from sft_model import parallel, save_nemo
    from sft_model.builder import build_model
    from sft_model.random_init import init_config
    from sft_trainer.distributed import setup

    setup(1, 1, seed=1234)
    cfg = init_config("mixtral", 300, num_layers=2, hidden_size=64, num_attention_heads=4, num_query_groups=2,
                      encoder_seq_length=128, moe_aux_loss_coeff=0.1, make_vocab_size_divisible_by=64)
    torch.manual_seed(0)
    path = save_nemo(out / "base.nemo", build_model(cfg), cfg, None)
    parallel.destroy_model_parallel_only()
    return path


def step(base: Path, data: Path, gbs: int, mbs: int, fixed: int, tp: int, ep: int) -> dict:
    from megatron.core import parallel_state as ps
    from sft_data.store import PreparedDataset
    from sft_model import load_nemo, parallel
    from sft_trainer.data import BatchPlan, BatchSource
    from sft_trainer.distributed import setup
    from sft_trainer.optim import wrap_ddp
    from sft_trainer.step import train_step

    world = setup(tp, 1, seed=1234, expert_parallel=ep)
    loaded = load_nemo(base, overrides={"sequence_parallel": tp > 1})
    chunks = wrap_ddp(loaded.handle.chunks, use_distributed_optimizer=False)
    batches = BatchSource(PreparedDataset(data), BatchPlan(gbs, mbs, world.dp_size), seed=0, dp_rank=world.dp_rank,
                          shuffle=False, pad_id=0, fixed_length=fixed or None)
    result, _ = train_step(chunks, NoOptimizer(), batches.batch_at(0), world, use_te=False)
    first = ps.get_expert_model_parallel_rank() * (loaded.config.num_moe_experts // ep)
    grads = {}
    for name, p in chunks[0].module.named_parameters():
        if getattr(p, "tensor_model_parallel", False) and tp > 1:
            continue  # a TP shard: its norm is not the whole tensor's
        if ".local_experts." in name:
            head, tail = name.split(".local_experts.")
            i, rest = tail.split(".", 1)
            name = f"{head}.experts.{first + int(i)}.{rest}"
        grads[name] = float(p.main_grad.norm())
    parallel.destroy_model_parallel_only()
    return {"loss": result.loss, "aux": result.moe_aux_loss, "trained": result.trained_tokens, "grads": grads}


def main(out: Path, data: Path, gbs: int, mbs: int, fixed: int, layouts: list[str]) -> None:
    import torch.distributed as dist
    from sft_model.parallel import init_process_group

    init_process_group()
    base = base_model(out)
    for layout in layouts:
        tp, ep = (int(n) for n in layout.split("x"))
        result = step(base, data, gbs, mbs, fixed, tp, ep)
        (out / f"{layout}-rank{dist.get_rank()}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6:])
