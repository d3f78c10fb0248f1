"""Run by test_moe_training.py: one training step's forward-backward of a tiny Mixtral through the
trainer's ``train_step`` (megatron DDP, schedules, token-weighted loss, router aux loss).

``python moe_step_worker.py OUT DATA GBS MBS FIXED EP...``: for each expert-parallel size in turn (the
world is whatever torchrun or nothing made it), writes OUT/ep<EP>-rank<r>.json with the loss, the aux
loss and gradient norms per parameter (experts keyed by their global index). FIXED > 0 pads every
row to that length (as under pipeline or expert parallelism); 0 pads to a multiple of 16.
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


CONFIG = dict(num_layers=2, hidden_size=64, num_attention_heads=4, num_query_groups=2, encoder_seq_length=128,
              moe_aux_loss_coeff=0.1, make_vocab_size_divisible_by=64)


def full_weights() -> dict:
    """Every expert's weights (built once without expert parallelism, seeded)."""
    from sft_model import parallel
    from sft_model.builder import build_model
    from sft_model.random_init import init_config
    from sft_trainer.distributed import setup

    setup(1, 1, seed=1234)
    torch.manual_seed(0)
    state = build_model(init_config("mixtral", 300, **CONFIG)).module.state_dict()
    parallel.destroy_model_parallel_only()
    return state


def step(full: dict, data: Path, gbs: int, mbs: int, fixed: int, ep: int) -> dict:
    from megatron.core import parallel_state as ps
    from sft_data.store import PreparedDataset
    from sft_model.builder import build_model
    from sft_model.random_init import init_config
    from sft_trainer.data import BatchPlan, BatchSource
    from sft_trainer.distributed import setup
    from sft_trainer.optim import wrap_ddp
    from sft_trainer.step import train_step

    world = setup(1, 1, seed=1234, expert_parallel=ep)
    cfg = init_config("mixtral", 300, **CONFIG)
    model = build_model(cfg, init=False)
    first = ps.get_expert_model_parallel_rank() * (cfg.num_moe_experts // ep)
    state = {}
    for name in model.module.state_dict():
        source = name
        if ".local_experts." in name:  # this rank's expert i is the global expert first + i
            head, tail = name.split(".local_experts.")
            i, rest = tail.split(".", 1)
            source = f"{head}.local_experts.{first + int(i)}.{rest}"
        state[name] = full[source]
    model.module.load_state_dict(state)
    chunks = wrap_ddp(model.chunks, use_distributed_optimizer=False)
    batches = BatchSource(PreparedDataset(data), BatchPlan(gbs, mbs, world.dp_size), seed=0, dp_rank=world.dp_rank,
                          shuffle=False, pad_id=0, fixed_length=fixed or None)
    result, _ = train_step(chunks, NoOptimizer(), batches.batch_at(0), world, use_te=False)
    grads = {}
    for name, p in chunks[0].module.named_parameters():
        if ".local_experts." in name:
            head, tail = name.split(".local_experts.")
            i, rest = tail.split(".", 1)
            name = f"{head}.experts.{first + int(i)}.{rest}"
        grads[name] = float(p.main_grad.norm())
    from sft_model import parallel

    parallel.destroy_model_parallel_only()
    return {"loss": result.loss, "aux": result.moe_aux_loss, "trained": result.trained_tokens, "grads": grads}


def main(out: Path, data: Path, gbs: int, mbs: int, fixed: int, eps: list[int]) -> None:
    import torch.distributed as dist
    from sft_model.parallel import init_process_group

    init_process_group()
    full = full_weights()
    for ep in eps:
        (out / f"ep{ep}-rank{dist.get_rank()}.json").write_text(json.dumps(step(full, data, gbs, mbs, fixed, ep)))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]),
         [int(a) for a in sys.argv[6:]])
