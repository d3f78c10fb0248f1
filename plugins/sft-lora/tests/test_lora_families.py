"""LoRA on every newer family: a short run trains adapters on attention and MLP (experts included),
and `sft merge-lora` gives a model whose logits equal the base with the adapter applied.

Each family's base comes from `sft init --family` (its default architecture at a tiny size).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[3]
# family → sft init sizes (4 heads over 2 query groups; a sliding window where the family has one)
FAMILIES = {
    "qwen3": {},
    "phi3": {},
    "gemma2": {},
    "gemma3": {},
    "mixtral": {},
    "qwen3_moe": {"moe_layer_freq": [1, 0]},  # an MoE layer and a dense one
}


@pytest.fixture(scope="module")
def tokenizer(tiny_nemo, tmp_path_factory):
    from sft_model import extract_tokenizer

    return extract_tokenizer(tiny_nemo, tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module", params=list(FAMILIES))
def run(request, tokenizer, tmp_path_factory):
    """(base, adapter .nemo, merged .nemo) for one family: a 2-step LoRA run and its merge."""
    from sft_data import load_tokenizer
    from sft_lora.merge import merge_lora
    from sft_model.random_init import init_nemo
    from sft_trainer.config.loading import build_config
    from sft_trainer.run import train

    work = tmp_path_factory.mktemp(request.param)
    vocab = load_tokenizer(tokenizer.files[0]).vocab_size
    base = init_nemo(request.param, tokenizer, vocab, work / "base.nemo", num_layers=2, hidden_size=64,
                     num_attention_heads=4, num_query_groups=2, encoder_seq_length=64, **FAMILIES[request.param])
    cfg = build_config({}, [
        f"model.restore_from_path={base}", f"exp_manager.explicit_log_dir={work / 'run'}",
        f"model.data.train_ds.file_path={REPO / 'examples/data/train.jsonl'}",
        f"model.data.validation_ds.file_path={REPO / 'examples/data/val.jsonl'}",
        "model.data.train_ds.max_seq_length=64", "model.data.validation_ds.max_seq_length=64",
        "trainer.precision=32", "model.micro_batch_size=4", "model.global_batch_size=4", "trainer.sft.max_steps=2",
        "trainer.sft.val_check_interval=2", "trainer.sft.limit_val_batches=1", "model.optim.lr=3e-2",
        "model.optim.sched.warmup_steps=0", "model.optim.sched.constant_steps=0",
        "exp_manager.create_tensorboard_logger=false", "exp_manager.checkpoint_callback_params.save_top_k=1",
        "model.peft.peft_scheme=lora", "model.peft.lora_tuning.target_modules=[all]",
        "model.peft.lora_tuning.adapter_dim=4", "model.peft.lora_tuning.alpha=8",
    ])
    adapter = train(cfg).nemo_path
    return base, adapter, merge_lora(base, adapter, work / "merged.nemo")


def test_merged_model_equals_base_plus_adapter(run):
    from sft_lora.merge import load_with_adapter
    from sft_model import compute_logits, load_nemo

    base, adapter, merged = run
    tokens = torch.randint(0, 500, (2, 40), generator=torch.Generator().manual_seed(0))
    adapted, _ = load_with_adapter(base, adapter)
    want = compute_logits(adapted, tokens)
    assert (compute_logits(load_nemo(merged), tokens) - want).abs().max() <= 1e-5
    assert (compute_logits(load_nemo(base), tokens) - want).abs().max() > 1e-3  # the adapter changed the model


def test_every_target_got_an_adapter(run):
    from sft_lora.merge import load_with_adapter

    base, adapter, _ = run
    adapted, _ = load_with_adapter(base, adapter)
    names = [n for n, _ in adapted.model.named_parameters() if n.endswith("lora.linear_out.weight")]
    config = adapted.config
    for layer in range(2):
        mlps = ([f"mlp.experts.local_experts.{e}" for e in range(config.num_moe_experts)]
                if config.layer_is_moe(layer + 1) else ["mlp"])
        targets = ["self_attention.linear_qkv", "self_attention.linear_proj",
                   *(f"{m}.{fc}" for m in mlps for fc in ("linear_fc1", "linear_fc2"))]
        for target in targets:
            assert any(n.startswith(f"decoder.layers.{layer}.{target}.") for n in names), (layer, target, names)


def test_sequence_parallel_models_are_refused_in_one_line():
    """MoE models train sequence-parallel under TP; adapters on row-parallel layers could not follow."""
    import copy

    from sft_core import SftError
    from sft_lora.config import parse
    from sft_lora.layers import Adapter, AdapterSpec
    from sft_model.builder import transformer_config
    from sft_model.parallel import ensure_parallel_state
    from sft_model.random_init import init_config

    ensure_parallel_state()
    config = copy.copy(transformer_config(init_config("mixtral", 100)))
    config.sequence_parallel = True  # as megatron builds it at TP > 1 (validation refuses it at TP=1)
    with pytest.raises(SftError, match=r"LoRA under sequence parallelism .* is not supported") as refused:
        Adapter(64, 64, config=config, spec=AdapterSpec(parse({}), "attention_dense", 1), row_parallel_base=True)
    assert "\n" not in str(refused.value)
