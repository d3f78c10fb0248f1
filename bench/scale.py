"""Benchmark: memory per rank and step time of megatron-scale settings at DP=2, side by side.

    uv run python bench/scale.py [--steps 6] [--hidden 512] [--layers 4] [--seq 512] [--mbs 4]

Settings, each in two fresh processes under torchrun (gloo on CPU, NCCL on GPUs): replicated Adam
(``model.optim.name=adam``); megatron's distributed optimizer (``distributed_fused_adam``); the
distributed optimizer with selective recomputation; with full recomputation (uniform, 1 layer).
Every setting trains the same model on the same synthetic batches through sft's own step. Per
rank: peak memory (RSS on CPU, ``torch.cuda.max_memory_allocated`` on GPU; RSS before the model was
built is given too, since the imports alone take hundreds of MiB), the optimizer-state bytes
counted from the optimizer's state tensors (Adam's moments and step, fp32 master weights where the
optimizer keeps its own), and the median step time after one warm-up step. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

SETTINGS = {
    "replicated": ["model.optim.name=adam"],
    "distributed": ["model.optim.name=distributed_fused_adam"],
    "distributed+selective": ["model.optim.name=distributed_fused_adam",
                              "model.activations_checkpoint_granularity=selective"],
    "distributed+full": ["model.optim.name=distributed_fused_adam", "model.activations_checkpoint_granularity=full",
                         "model.activations_checkpoint_method=uniform", "model.activations_checkpoint_num_layers=1"],
}
VOCAB = 4000
MIB = 2**20


def model_config(args, overrides: dict):
    from sft_model.config import ModelConfig

    return ModelConfig(num_layers=args.layers, hidden_size=args.hidden, num_attention_heads=args.heads,
                       num_query_groups=args.heads, ffn_hidden_size=args.hidden * 8 // 3 // 64 * 64,
                       encoder_seq_length=args.seq, vocab_size=VOCAB, make_vocab_size_divisible_by=128,
                       precision="32", **overrides)


def peak_memory() -> int:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def worker(args) -> None:
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("megatron").setLevel(logging.ERROR)
    from sft_data.store import PreparedDataset
    from sft_model.builder import build_model
    from sft_trainer.config.loading import build_config
    from sft_trainer.data import BatchPlan, BatchSource
    from sft_trainer.distributed import setup
    from sft_trainer.optim import (
        build_optimizer,
        optimizer_state_bytes,
        set_lr,
        uses_distributed_optimizer,
        wrap_ddp,
    )
    from sft_trainer.step import train_step

    torch.set_num_threads(args.threads)
    topo = setup(1, 1, seed=0)
    cfg = build_config({}, ["model.restore_from_path=x.nemo", "trainer.precision=32", *SETTINGS[args.worker]])
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    before = peak_memory()
    distributed = uses_distributed_optimizer(cfg)
    torch.manual_seed(0)
    chunks = wrap_ddp(build_model(model_config(args, cfg.model.model_overrides())).chunks, distributed)
    optimizer = build_optimizer(chunks, cfg, torch.float32, distributed)
    source = BatchSource(PreparedDataset(Path(args.data)), BatchPlan(args.gbs, args.mbs, topo.dp_size), seed=0,
                         dp_rank=topo.dp_rank, shuffle=True, pad_id=0, fixed_length=args.seq)
    times = []
    for step in range(args.steps + 1):
        batch = source.batch_at(step * args.gbs)
        start = time.perf_counter()
        train_step(chunks, optimizer, batch, topo, use_te=False)
        set_lr(optimizer, 1e-4)
        optimizer.step()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    result = {"rank": topo.rank, "peak_memory_mib": round(peak_memory() / MIB, 1),
              "memory_before_model_mib": round(before / MIB, 1),
              "optimizer_state_mib": round(optimizer_state_bytes(optimizer) / MIB, 2),
              "optimizer_state_bytes": optimizer_state_bytes(optimizer),
              "step_time_s": round(statistics.median(times[1:]), 4)}
    (Path(args.out) / f"{args.worker}-rank{topo.rank}.json").write_text(json.dumps(result))


def launch(name: str, args, out: Path, data: Path) -> list[dict]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(port), __file__, "--worker", name, "--out", str(out), "--data", str(data),
           *(f"--{k}={getattr(args, k)}" for k in ("steps", "hidden", "layers", "heads", "seq", "gbs", "mbs", "threads"))]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**env, "OMP_NUM_THREADS": str(args.threads)})
    if proc.returncode:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
    return [json.loads((out / f"{name}-rank{r}.json").read_text()) for r in range(2)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--gbs", type=int, default=8)
    parser.add_argument("--mbs", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="threads per rank")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    sys.path.insert(0, str(Path(__file__).parent))
    from sft_data.store import write_prepared
    from train import synthetic_samples

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        write_prepared(data, synthetic_samples(400, VOCAB, args.seq, seed=0), bins=None, pack_size=None, header={})
        for name in SETTINGS:
            results[name] = launch(name, args, Path(tmp), data)
    from sft_model.builder import build_model
    from sft_model.parallel import ensure_parallel_state

    ensure_parallel_state()
    params = sum(p.numel() for p in build_model(model_config(args, {})).module.parameters())
    replicated = results["replicated"][0]["optimizer_state_bytes"]
    print(dumps({
        "machine": {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else
                    (platform.processor() or platform.machine()), "cores": os.cpu_count(),
                    "threads_per_rank": args.threads, "torch": torch.__version__},
        "model": {"family": "llama", "parameters": params, "layers": args.layers, "hidden": args.hidden,
                  "seq": args.seq, "dtype": "float32"},
        "batch": {"data_parallel": 2, "global_batch_size": args.gbs, "micro_batch_size": args.mbs},
        "memory": "peak RSS per process" if not torch.cuda.is_available() else "torch.cuda.max_memory_allocated",
        "per_rank": "each list holds rank 0's value, then rank 1's",
        "settings": {name: {"options": SETTINGS[name], **{key: [r[key] for r in ranks] for key in FIELDS},
                            "optimizer_state_vs_replicated": [round(r["optimizer_state_bytes"] / replicated, 3)
                                                              for r in ranks]}
                     for name, ranks in results.items()},
    }))


FIELDS = ("peak_memory_mib", "memory_before_model_mib", "optimizer_state_mib", "optimizer_state_bytes", "step_time_s")


def dumps(obj) -> str:
    """JSON with one setting's lists on one line each, so the settings read side by side."""
    return re.sub(r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]",
                  json.dumps(obj, indent=2))


if __name__ == "__main__":
    main()
