"""Benchmark: trained tokens/s of sft's training step vs. a plain transformers + torch AdamW loop,
and packed vs. padded batches, on the same model config, data and threads, in one run.

    uv run python bench/train.py [--steps 8] [--hidden 256] [--layers 4] [--seq 512] [--threads 2]

Prints one JSON object. ``sft_padded`` and ``transformers_padded`` see the same rows (samples
padded per micro-batch, the reference's collate); ``sft_packed`` sees the same samples packed
into ``--seq``-token rows (first_fit_decreasing). Trained tokens are label positions with loss.
Each measurement excludes two warm-up steps.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def synthetic_samples(n: int, vocab: int, max_len: int, seed: int):
    from sft_data.types import TokenizedSample

    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(max_len / 4), 0.6, n).astype(int), 16, max_len)
    samples = []
    for length in lengths:
        ids = rng.integers(5, vocab, size=int(length)).tolist()
        prompt = int(rng.integers(1, length // 2))
        samples.append(TokenizedSample(ids, [False] * prompt + [True] * (int(length) - prompt)))
    return samples


def model_config(args, vocab: int):
    from sft_model.config import ModelConfig

    return ModelConfig(num_layers=args.layers, hidden_size=args.hidden, num_attention_heads=args.heads,
                       num_query_groups=args.heads, ffn_hidden_size=args.hidden * 8 // 3 // 64 * 64,
                       encoder_seq_length=args.seq, vocab_size=vocab, make_vocab_size_divisible_by=128,
                       precision="32")


def timed(step, batches, warmup: int = 2) -> dict:
    for batch in batches[:warmup]:
        step(batch)
    trained = tokens = 0
    start = time.perf_counter()
    for batch in batches[warmup:]:
        t, n = step(batch)
        trained += t
        tokens += n
    elapsed = time.perf_counter() - start
    steps = len(batches) - warmup
    return {"steps": steps, "seconds": round(elapsed, 3), "trained_tokens_per_sec": round(trained / elapsed, 1),
            "tokens_per_sec": round(tokens / elapsed, 1), "step_time": round(elapsed / steps, 4)}


def bench_sft(cfg, source_path: Path, gbs: int, mbs: int, steps: int, topo) -> dict:
    from sft_data.store import PreparedDataset
    from sft_model.builder import build_model
    from sft_trainer.config.loading import build_config
    from sft_trainer.data import BatchPlan, BatchSource
    from sft_trainer.optim import build_optimizer, set_lr, wrap_ddp
    from sft_trainer.step import train_step

    torch.manual_seed(0)
    chunks = wrap_ddp(build_model(cfg, dtype=torch.float32).chunks, use_distributed_optimizer=False)
    train_cfg = build_config({}, ["model.optim.lr=1e-4", "trainer.precision=32"])
    optimizer = build_optimizer(chunks, train_cfg, torch.float32, False)
    source = BatchSource(PreparedDataset(source_path), BatchPlan(gbs, mbs, 1), seed=0, dp_rank=0, shuffle=True,
                         pad_id=0, fixed_length=None)
    batches = [source.batch_at(i * gbs) for i in range(steps + 2)]

    def step(microbatches):
        result, _ = train_step(chunks, optimizer, microbatches, topo, use_te=False)
        set_lr(optimizer, 1e-4)
        optimizer.step()
        return result.trained_tokens, result.tokens

    return timed(step, batches)


def bench_transformers(cfg, source_path: Path, gbs: int, mbs: int, steps: int) -> dict:
    from sft_data.store import PreparedDataset
    from sft_trainer.data import BatchPlan, BatchSource
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    hf = LlamaConfig(vocab_size=cfg.padded_vocab_size(), hidden_size=cfg.hidden_size,
                     intermediate_size=cfg.ffn_hidden_size, num_hidden_layers=cfg.num_layers,
                     num_attention_heads=cfg.num_attention_heads, num_key_value_heads=cfg.num_query_groups,
                     max_position_embeddings=cfg.max_position_embeddings, rms_norm_eps=cfg.layernorm_epsilon,
                     tie_word_embeddings=False, attn_implementation="sdpa")
    model = LlamaForCausalLM(hf).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98), weight_decay=0.01)
    source = BatchSource(PreparedDataset(source_path), BatchPlan(gbs, mbs, 1), seed=0, dp_rank=0, shuffle=True,
                         pad_id=0, fixed_length=None)
    batches = [source.batch_at(i * gbs) for i in range(steps + 2)]

    def step(microbatches):
        optimizer.zero_grad()
        trained = sum(int(mb["loss_mask"].sum()) for mb in microbatches)
        tokens = sum(int(mb["num_tokens"]) for mb in microbatches)
        for mb in microbatches:
            labels = mb["labels"].masked_fill(mb["loss_mask"] == 0, -100)
            logits = model(input_ids=mb["tokens"], attention_mask=(mb["position_ids"] >= 0).long()).logits
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100,
                                                     reduction="sum") / trained
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return trained, tokens

    return timed(step, batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--gbs", type=int, default=8)
    parser.add_argument("--mbs", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("megatron").setLevel(logging.ERROR)

    from sft_data.packing.algorithms import BUILTIN_ALGORITHMS
    from sft_data.packing.plan import pack_samples
    from sft_data.store import write_prepared
    from sft_trainer.distributed import setup

    vocab = 4000
    cfg = model_config(args, vocab)
    topo = setup(1, 1, seed=0)
    samples = synthetic_samples(2000, vocab, args.seq, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        padded_dir, packed_dir = Path(tmp) / "padded", Path(tmp) / "packed"
        write_prepared(padded_dir, samples, bins=None, pack_size=None, header={})
        ffd = next(a for a in BUILTIN_ALGORITHMS if a.name == "first_fit_decreasing")
        bins, stats = pack_samples(samples, args.seq, ffd)
        write_prepared(packed_dir, samples, bins=bins, pack_size=args.seq, header={})
        per_bin = len(samples) / stats["bins"]
        packed_gbs = max(1, round(args.gbs / per_bin))  # about the same samples per step
        ours = bench_sft(cfg, padded_dir, args.gbs, args.mbs, args.steps, topo)
        theirs = bench_transformers(cfg, padded_dir, args.gbs, args.mbs, args.steps)
        packed = bench_sft(cfg, packed_dir, packed_gbs, 1, args.steps, topo)
    params = sum(p.numel() for p in __import__("sft_model.builder", fromlist=["x"]).build_model(cfg).module.parameters())
    print(json.dumps({
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads,
                    "torch": torch.__version__, "cores": os.cpu_count()},
        "model": {"family": "llama", "parameters": params, "layers": args.layers, "hidden": args.hidden,
                  "seq": args.seq, "dtype": "float32"},
        "batch": {"global_batch_size": args.gbs, "micro_batch_size": args.mbs, "packed_rows_per_step": packed_gbs,
                  "samples_per_packed_row": round(per_bin, 2), "packing_efficiency": round(stats["efficiency"], 4)},
        "sft_padded": ours,
        "transformers_padded": theirs,
        "sft_packed": packed,
        "ratio_sft_vs_transformers": round(ours["trained_tokens_per_sec"] / theirs["trained_tokens_per_sec"], 3),
        "ratio_packed_vs_padded": round(packed["trained_tokens_per_sec"] / ours["trained_tokens_per_sec"], 3),
    }, indent=2))


if __name__ == "__main__":
    main()
