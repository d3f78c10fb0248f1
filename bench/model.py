"""Forward+backward tokens/s on CPU: our megatron-core GPTModel vs transformers, dense and MoE.

Rows: a ~20M-parameter Llama (LlamaForCausalLM) and a tiny Mixtral (MixtralForCausalLM: 8 experts,
top-2). Per row: same config, same weights (converted), same inputs, same thread count, fp32, in one
run; transformers is timed before and after ours. Prints one JSON object with a row per model.
Usage: uv run python bench/model.py [--steps N] [--threads N] [--only llama|moe]
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def models(seq: int) -> dict:
    from transformers import LlamaConfig, LlamaForCausalLM, MixtralConfig, MixtralForCausalLM

    return {
        "llama": (LlamaForCausalLM, LlamaConfig(
            vocab_size=8192, hidden_size=384, intermediate_size=1024, num_hidden_layers=8, num_attention_heads=6,
            num_key_value_heads=2, max_position_embeddings=seq, tie_word_embeddings=False)),
        "moe": (MixtralForCausalLM, MixtralConfig(
            vocab_size=8192, hidden_size=256, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, num_local_experts=8, num_experts_per_tok=2, max_position_embeddings=seq,
            router_aux_loss_coef=0.0, tie_word_embeddings=False)),
    }


def measure(model_class, hf_cfg, args) -> dict:
    import sft_model
    from sft_model.builder import build_model
    from sft_model.families.registry import get_families
    from sft_model.weights import assign

    torch.manual_seed(0)
    hf = model_class(hf_cfg).float().train()
    family = get_families().for_hf_config(hf_cfg.to_dict())
    cfg = family.config_from_hf(hf_cfg.to_dict()).replace(precision="32")
    handle = build_model(cfg, init=False)
    ours = handle.module
    # transformers 5 keeps experts fused in memory; the family reads that layout as it reads the hub's
    state = hf.state_dict()
    assign(ours, family.hf_to_canonical(cfg, state.__getitem__, set(state)))
    ours.train()
    params = sum(p.numel() for p in hf.parameters())

    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, hf_cfg.vocab_size, (args.batch, args.seq), generator=g)
    labels = ids.roll(-1, 1)
    pos = torch.arange(args.seq).expand_as(ids)

    def step_hf():
        hf.zero_grad(set_to_none=True)
        logits = hf(ids).logits
        torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)).backward()

    def step_ours():
        ours.zero_grad(set_to_none=True)
        ours(ids, pos, None, labels=labels).mean().backward()

    def tokens_per_s(step) -> float:
        for _ in range(args.warmup):
            step()
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        return args.steps * ids.numel() / (time.perf_counter() - start)

    with torch.no_grad():  # same model, same numbers: check before timing
        diff = (sft_model.compute_logits(handle, ids[:1, :64]) - hf(ids[:1, :64]).logits).abs().max().item()
    results = {}
    for name, step in (("transformers", step_hf), ("sft", step_ours), ("transformers_again", step_hf)):
        results[name] = tokens_per_s(step)
    baseline = (results["transformers"] + results["transformers_again"]) / 2
    return {
        "model": type(hf).__name__, "parameters": params, "max_abs_logit_diff": diff,
        "sft_tokens_per_s": round(results["sft"], 1), "transformers_tokens_per_s": round(baseline, 1),
        "transformers_runs": [round(results["transformers"], 1), round(results["transformers_again"], 1)],
        "ratio_sft_over_transformers": round(results["sft"] / baseline, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--only", choices=["llama", "moe"], default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from sft_model.parallel import ensure_parallel_state

    ensure_parallel_state()
    rows = {name: measure(model_class, hf_cfg, args) for name, (model_class, hf_cfg) in models(args.seq).items()
            if args.only in (None, name)}
    print(json.dumps({"benchmark": "fwd+bwd tokens/s, CPU fp32", "batch": args.batch, "seq": args.seq,
                      "threads": args.threads, "steps": args.steps, "rows": rows}))


if __name__ == "__main__":
    main()
