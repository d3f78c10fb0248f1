"""Fixtures for sft-model tests: one parallel state per session, tiny random HF models built here."""

from __future__ import annotations

import pytest
import torch

VOCAB = 100
WINDOW = 5


def hf_model(kind: str, *, tied: bool = False, seed: int = 0):
    """A tiny random transformers model (2 layers, hidden 64) of the given kind, in eval mode."""
    import transformers as tf

    torch.manual_seed(seed)
    common = dict(vocab_size=VOCAB, tie_word_embeddings=tied)
    llama_like = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=128, **common)
    if kind == "llama":
        model = tf.LlamaForCausalLM(tf.LlamaConfig(rope_theta=50000.0, **llama_like))
    elif kind == "mistral":
        model = tf.MistralForCausalLM(tf.MistralConfig(sliding_window=None, **llama_like))
    elif kind == "qwen2":
        model = tf.Qwen2ForCausalLM(tf.Qwen2Config(**llama_like))
        with torch.no_grad():  # random q/k/v biases, so a wrong bias layout shows in the logits
            for name, p in model.named_parameters():
                if name.endswith("bias"):
                    p.normal_(std=0.5)
    elif kind == "mistral-window":  # the window (5) is shorter than the test sequences
        model = tf.MistralForCausalLM(tf.MistralConfig(sliding_window=WINDOW, **llama_like))
    elif kind == "qwen3":  # head_dim 32 ≠ hidden/heads: kv_channels must come from the config
        model = tf.Qwen3ForCausalLM(tf.Qwen3Config(head_dim=32, **llama_like))
    elif kind == "phi3":  # Phi-4-mini's partial RoPE (0.75), a window shorter than the test sequences
        model = tf.Phi3ForCausalLM(tf.Phi3Config(sliding_window=WINDOW, partial_rotary_factor=0.75, pad_token_id=0,
                                                 **llama_like))
    elif kind == "gemma2":  # small soft-caps so that tanh bends; attention scale ≠ head_dim^-½
        model = tf.Gemma2ForCausalLM(tf.Gemma2Config(
            head_dim=32, sliding_window=WINDOW, query_pre_attn_scalar=24, attn_logit_softcapping=2.0,
            final_logit_softcapping=3.0, **{**llama_like, "tie_word_embeddings": True, **common}))
    elif kind == "gemma3":  # sliding, sliding, global, sliding; the global layers' RoPE scaled (linear 2)
        model = tf.Gemma3ForCausalLM(tf.Gemma3TextConfig(
            head_dim=32, sliding_window=WINDOW, query_pre_attn_scalar=24,
            layer_types=["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"],
            rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                             "full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e6}},
            **{**llama_like, "num_hidden_layers": 4, **common}))
    elif kind == "mixtral":  # 4 experts, top-2, every layer MoE
        model = tf.MixtralForCausalLM(tf.MixtralConfig(num_local_experts=4, num_experts_per_tok=2, **llama_like))
    elif kind == "qwen3_moe":  # 4 experts, top-2 without renormalising; layer 1 a dense MLP of another width
        model = tf.Qwen3MoeForCausalLM(tf.Qwen3MoeConfig(
            head_dim=32, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=48, norm_topk_prob=False,
            mlp_only_layers=[1], **llama_like))
    elif kind == "gpt2":
        model = tf.GPT2LMHeadModel(tf.GPT2Config(n_embd=64, n_layer=2, n_head=4, n_positions=128, **common))
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "ln_" in name or name.endswith("bias"):
                    p.normal_(std=0.3)
    else:
        raise ValueError(kind)
    if kind != "gpt2":
        with torch.no_grad():  # norms at 1.0 would hide a norm mapped to the wrong place
            for name, p in model.named_parameters():
                if "norm" in name:
                    p.normal_(mean=1.0, std=0.3)
                elif name.endswith("mlp.gate.weight"):  # decisive routing: no top-k near-ties to flip
                    p.normal_(std=1.0)
    return model.eval()


@pytest.fixture(scope="session")
def megatron():
    """A one-process TP=1/PP=1 megatron-core state for the whole session."""
    from sft_model.parallel import ensure_parallel_state

    ensure_parallel_state()
    return True


@pytest.fixture(scope="session")
def sp_tokenizer(tmp_path_factory):
    """A tiny SentencePiece model trained here (sentencepiece is installed with sft-data)."""
    import sentencepiece as spm

    d = tmp_path_factory.mktemp("sp")
    text = d / "corpus.txt"
    text.write_text("\n".join(f"the quick brown fox {i} jumps over the lazy dog {i * 7}" for i in range(200)))
    spm.SentencePieceTrainer.train(input=str(text), model_prefix=str(d / "tokenizer"), vocab_size=90,
                                   model_type="bpe", minloglevel=2)
    return d / "tokenizer.model"
