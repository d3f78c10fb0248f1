"""Run by test_parallel.py as two gloo processes (RANK/WORLD_SIZE/MASTER_* set by the test).

Checks, in one process group: TP=1 reference loss and logits; a .nemo saved at TP=1 loads at TP=2
with the same logits and the same loss after forward+backward; a .nemo saved at TP=2 loads at
TP=1 with identical logits; PP=2 through megatron's pipeline schedule gives the same loss.
Results go to OUT_DIR/rank<r>.json for the test to assert on.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist


def batch():
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(0, 100, (2, 16), generator=g)
    return ids, torch.arange(16).expand(2, 16), ids.roll(-1, 1)


def fwd_bwd_loss(model) -> tuple[float, float]:
    """Mean token loss and the global grad norm of the embedding (TP-sharded rows are all-gathered)."""
    from megatron.core import parallel_state as ps
    from megatron.core.tensor_parallel import gather_from_tensor_model_parallel_region

    ids, pos, labels = batch()
    model.zero_grad()
    loss = model(ids, pos, None, labels=labels).mean()
    loss.backward()
    grad = model.embedding.word_embeddings.weight.grad
    if ps.get_tensor_model_parallel_world_size() > 1:
        grad = gather_from_tensor_model_parallel_region(grad.t().contiguous()).t()
    return loss.item(), grad.norm().item()


def pipeline_loss(model) -> float:
    from megatron.core import parallel_state as ps
    from megatron.core.pipeline_parallel import get_forward_backward_func

    ids, pos, labels = batch()

    def step(_, module):
        out = module(ids, pos, None, labels=labels)
        return out, lambda o: (o.sum() / o.numel(), {"loss": o.detach().mean()})

    losses = get_forward_backward_func()(forward_step_func=step, data_iterator=iter([None]), model=[model],
                                         num_microbatches=1, seq_length=16, micro_batch_size=2, forward_only=False)
    value = torch.tensor([losses[0]["loss"].item() if ps.is_pipeline_last_stage() else 0.0])
    dist.all_reduce(value, group=ps.get_pipeline_model_parallel_group())
    return value.item()


def main(out_dir: Path, hf_dir: Path) -> None:
    import sft_model
    from sft_model import parallel

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    results = {}

    parallel.initialize(1, 1)
    tp1 = out_dir / "tp1.nemo"
    sft_model.hf_to_nemo(hf_dir, tp1)  # collective: both data-parallel replicas take part in the save
    loaded = sft_model.load_nemo(tp1)
    ids = batch()[0]
    ref_logits = sft_model.compute_logits(loaded, ids)
    results["tp1_loss"], results["tp1_grad"] = fwd_bwd_loss(loaded.model)
    parallel.destroy_model_parallel_only()

    parallel.initialize(2, 1)
    loaded = sft_model.load_nemo(tp1)
    results["tp2_logits_diff"] = (sft_model.compute_logits(loaded, ids) - ref_logits).abs().max().item()
    results["tp2_loss"], results["tp2_grad"] = fwd_bwd_loss(loaded.model)
    sft_model.save_nemo(out_dir / "tp2.nemo", loaded.model, loaded.config, loaded.tokenizer)
    parallel.destroy_model_parallel_only()

    parallel.initialize(1, 1)
    loaded = sft_model.load_nemo(out_dir / "tp2.nemo")
    results["tp2_saved_tp1_identical"] = bool(torch.equal(sft_model.compute_logits(loaded, ids), ref_logits))
    parallel.destroy_model_parallel_only()

    parallel.initialize(1, 2)
    loaded = sft_model.load_nemo(tp1)
    results["pp2_layers"] = len(loaded.model.decoder.layers)
    results["pp2_loss"] = pipeline_loss(loaded.model)
    parallel.destroy_model_parallel_only()

    (out_dir / f"rank{rank}.json").write_text(json.dumps(results))
    dist.destroy_process_group()


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main(Path(sys.argv[1]), Path(sys.argv[2]))
