"""Run by test_family_parallel.py as two gloo processes: for each HF model directory given, TP=2 and
PP=2 (and EP=2 for mixture-of-experts models) against one process. Results go to
OUT_DIR/rank<r>.json, keyed by the directory's name, for the test to assert on.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch.distributed as dist
from dist_worker import batch, fwd_bwd_loss, pipeline_loss


def check(hf_dir: Path, out_dir: Path) -> dict:
    import sft_model
    from sft_model import parallel

    results = {}
    parallel.initialize(1, 1)
    nemo = out_dir / f"{hf_dir.name}.nemo"
    sft_model.hf_to_nemo(hf_dir, nemo)  # collective: both data-parallel replicas take part in the save
    loaded = sft_model.load_nemo(nemo)
    ids = batch()[0]
    ref_logits = sft_model.compute_logits(loaded, ids)
    results["tp1_loss"], results["tp1_grad"] = fwd_bwd_loss(loaded.model)
    results["layers"] = loaded.config.num_layers
    parallel.destroy_model_parallel_only()

    parallel.initialize(2, 1)
    moe = results["moe"] = loaded.config.is_moe  # megatron trains MoE layers under TP only sequence-parallel
    loaded = sft_model.load_nemo(nemo, overrides={"sequence_parallel": moe})
    results["tp2_logits_diff"] = (sft_model.compute_logits(loaded, ids) - ref_logits).abs().max().item()
    results["tp2_loss"], results["tp2_grad"] = fwd_bwd_loss(loaded.model)
    parallel.destroy_model_parallel_only()

    if not moe:  # dense families sequence-parallel too (the user's model.sequence_parallel): q/k, zero-centred norms
        parallel.initialize(2, 1)
        loaded = sft_model.load_nemo(nemo, overrides={"sequence_parallel": True})
        norms = [p for n, p in loaded.model.named_parameters() if "norm" in n]
        results["sp_norms_marked"] = bool(norms) and all(getattr(p, "sequence_parallel", False) for p in norms)
        results["sp_logits_diff"] = (sft_model.compute_logits(loaded, ids) - ref_logits).abs().max().item()
        results["sp_loss"], results["sp_grad"] = fwd_bwd_loss(loaded.model)
        parallel.destroy_model_parallel_only()

    parallel.initialize(1, 2)
    loaded = sft_model.load_nemo(nemo)
    if moe:  # the direct backward passes above left megatron's aux-loss scale 0-d; schedules keep it [1]
        from megatron.core.transformer.moe.moe_utils import MoEAuxLossAutoScaler

        MoEAuxLossAutoScaler.main_loss_backward_scale = None
    results["pp2_layers"] = len(loaded.model.decoder.layers)
    results["pp2_loss"] = pipeline_loss(loaded.model)
    parallel.destroy_model_parallel_only()

    if moe:
        parallel.initialize(1, 1, expert_parallel=2)
        loaded = sft_model.load_nemo(nemo)
        results["ep2_local_experts"] = len(loaded.model.decoder.layers[0].mlp.experts.local_experts)
        results["ep2_logits_diff"] = (sft_model.compute_logits(loaded, ids) - ref_logits).abs().max().item()
        results["ep2_loss"], results["ep2_grad"] = fwd_bwd_loss(loaded.model)
        parallel.destroy_model_parallel_only()
    return results


def main(out_dir: Path, hf_dirs: list[Path]) -> None:
    dist.init_process_group("gloo")
    results = {d.name: check(d, out_dir) for d in hf_dirs}
    (out_dir / f"rank{dist.get_rank()}.json").write_text(json.dumps(results))
    dist.destroy_process_group()


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main(Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]])
