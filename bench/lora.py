"""Benchmark: peak memory and step time of LoRA vs. full fine-tuning, same model, data and threads.

    uv run python bench/lora.py [--steps 10] [--hidden 256] [--layers 8] [--seq 256] [--threads 2]

Builds one random few-million-parameter Llama .nemo and a JSONL data set, then trains it with
``sft_trainer.run.train`` twice, each mode in a fresh process (so one mode's allocations cannot
raise the other's high-water mark): full fine-tuning, and ``model.peft.peft_scheme=lora``.
Prints one JSON object per run with, per mode:

- ``peak_rss_mb``: the process's maximum resident set size (``getrusage``);
- ``train_peak_rss_mb``: how far training raised it above the peak reached once torch,
  megatron-core and the trainer were imported (the memory training itself needs: weights, grads,
  optimizer state, activations);
- ``step_time_s``: median of the trainer's own ``train/step_time`` after ``--warmup`` steps;
- ``trainable_params`` / ``total_params``: counted on the built model at train start.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LORA = ["model.peft.peft_scheme=lora", "model.peft.lora_tuning.target_modules=[all]",
        "model.peft.lora_tuning.adapter_dim=16", "model.peft.lora_tuning.alpha=32"]


def make_data(path: Path, count: int) -> Path:
    """Prompt-response records of a few hundred tokens, cut from the example corpus."""
    lines = [line.strip() for line in (REPO / "examples/data/corpus.txt").read_text().splitlines() if line.strip()]
    with path.open("w", encoding="utf-8") as out:
        for i in range(count):
            start = (i * 7) % (len(lines) - 12)
            out.write(json.dumps({"input": " ".join(lines[start:start + 6]),
                                  "output": " ".join(lines[start + 6:start + 12])}) + "\n")
    return path


def setup(work: Path, args) -> Path:
    from sft_data import load_tokenizer
    from sft_data.tokenizers.training import train_sentencepiece
    from sft_model.random_init import init_nemo

    tok = train_sentencepiece([REPO / "examples/data/corpus.txt"], work / "tok.model", vocab_size=1000)
    make_data(work / "train.jsonl", 256)
    heads = max(args.hidden // 64, 1)
    return init_nemo("llama", tok, load_tokenizer(tok).vocab_size, work / "base.nemo", num_layers=args.layers,
                     hidden_size=args.hidden, num_attention_heads=heads, num_query_groups=heads,
                     ffn_hidden_size=args.hidden * 8 // 3 // 64 * 64, encoder_seq_length=args.seq)


def child(mode: str, work: Path, args) -> dict:
    """One training run in this (fresh) process; returns its measurements."""
    import resource

    import pluggy
    import torch

    torch.set_num_threads(args.threads)
    # import everything the run needs first: the baseline then holds the libraries, not training
    import megatron.core.models.gpt  # noqa: F401
    from sft_core import get_plugin_manager
    from sft_trainer.config.loading import build_config
    from sft_trainer.run import train

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    counts: dict[str, int] = {}

    class Count:
        @pluggy.HookimplMarker("sft")
        def sft_on_train_start(self, state, model):
            params = [p for chunk in model for p in chunk.parameters()]
            counts["total"] = sum(p.numel() for p in params)
            counts["trainable"] = sum(p.numel() for p in params if p.requires_grad)

    run_dir = work / mode
    gbs = args.micro_batch * args.accumulate
    cfg = build_config({}, [
        f"model.restore_from_path={work / 'base.nemo'}", f"exp_manager.explicit_log_dir={run_dir}",
        f"model.data.train_ds.file_path={work / 'train.jsonl'}",
        f"model.data.validation_ds.file_path={work / 'train.jsonl'}",
        f"model.data.train_ds.max_seq_length={args.seq}", f"model.data.validation_ds.max_seq_length={args.seq}",
        "trainer.precision=32", f"model.micro_batch_size={args.micro_batch}", f"model.global_batch_size={gbs}",
        f"trainer.sft.max_steps={args.steps}", "trainer.sft.val_check_interval=100000",
        "trainer.sft.limit_val_batches=1", "model.optim.lr=1e-4", "model.optim.sched.warmup_steps=0",
        "model.optim.sched.constant_steps=0", "exp_manager.create_tensorboard_logger=false",
        "exp_manager.create_checkpoint_callback=false",
        "exp_manager.checkpoint_callback_params.save_nemo_on_train_end=false",
        *(LORA if mode == "lora" else []),
    ])
    pm = get_plugin_manager()
    pm.register(Count())
    train(cfg, pm)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    times = [r["train/step_time"] for r in records if "train/step_time" in r][args.warmup:]
    return {"peak_rss_mb": round(peak / 1024, 1), "train_peak_rss_mb": round((peak - before) / 1024, 1),
            "step_time_s": round(statistics.median(times), 4), "timed_steps": len(times),
            "trainable_params": counts["trainable"], "total_params": counts["total"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--micro-batch", type=int, default=4)
    parser.add_argument("--accumulate", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", choices=["full", "lora"], help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.work, args)))
        return

    with tempfile.TemporaryDirectory(prefix="bench-lora-") as tmp:
        work = Path(tmp)
        setup(work, args)
        # init_nemo gave this process a one-process world (MASTER_PORT...): the children must not join it
        env = {k: v for k, v in os.environ.items()
               if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
        env["OMP_NUM_THREADS"] = str(args.threads)
        results = {}
        for mode in ("full", "lora"):
            proc = subprocess.run([sys.executable, __file__, "--child", mode, "--work", str(work), *sys.argv[1:]],
                                  capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                sys.exit(f"{mode} run failed:\n{proc.stderr[-3000:]}")
            results[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    full, lora = results["full"], results["lora"]
    print(json.dumps({
        "model": {"family": "llama", "hidden": args.hidden, "layers": args.layers, "params": full["total_params"]},
        "data": {"seq": args.seq, "micro_batch": args.micro_batch, "global_batch": args.micro_batch * args.accumulate,
                 "steps": args.steps, "warmup_excluded": args.warmup},
        "lora": dict(item.split("=", 1) for item in (s.removeprefix("model.peft.") for s in LORA)),
        "threads": args.threads, "precision": "fp32", "machine": platform.processor() or platform.machine(),
        "full": full, "lora_run": lora,
        "lora_vs_full": {
            "train_peak_rss_ratio": round(lora["train_peak_rss_mb"] / full["train_peak_rss_mb"], 3),
            "step_time_ratio": round(lora["step_time_s"] / full["step_time_s"], 3),
            "trainable_fraction": round(lora["trainable_params"] / lora["total_params"], 4),
        },
    }, indent=2))


if __name__ == "__main__":
    main()
