"""HF → .nemo → logits equal transformers' (fp32, ≤ 1e-4), and HF → .nemo → HF is bit-identical."""

from __future__ import annotations

import json

import pytest
import torch

from .conftest import VOCAB, hf_model

CASES = [("llama", False), ("llama", True), ("mistral", False), ("mistral-window", False), ("qwen2", False),
         ("qwen3", False), ("qwen3", True), ("phi3", False), ("phi3", True),
         ("gemma2", True), ("gemma3", True), ("gemma3", False), ("mixtral", False), ("qwen3_moe", False),
         ("qwen3_moe", True), ("gpt2", True), ("gpt2", False)]


@pytest.fixture(scope="module")
def token_ids():
    torch.manual_seed(1)
    return torch.randint(0, VOCAB, (2, 24))


@pytest.mark.parametrize(("kind", "tied"), CASES, ids=[f"{k}-{'tied' if t else 'untied'}" for k, t in CASES])
def test_logits_match_transformers_and_round_trip_is_exact(megatron, tmp_path, token_ids, kind, tied):
    import sft_model

    hf = hf_model(kind, tied=tied)
    hf.save_pretrained(tmp_path / "hf")
    nemo = sft_model.hf_to_nemo(tmp_path / "hf", tmp_path / "m.nemo")
    loaded = sft_model.load_nemo(nemo)
    assert loaded.config.share_embeddings_and_output_weights == tied
    with torch.no_grad():
        expected = hf(token_ids).logits
    ours = sft_model.compute_logits(loaded, token_ids)
    assert ours.shape == expected.shape
    assert (ours - expected).abs().max().item() <= 1e-4

    sft_model.nemo_to_hf(nemo, tmp_path / "back")
    back = type(hf).from_pretrained(tmp_path / "back")
    original, restored = hf.state_dict(), back.state_dict()
    assert set(original) == set(restored)
    for name, tensor in original.items():
        assert torch.equal(tensor, restored[name]), name
    config = json.loads((tmp_path / "back" / "config.json").read_text())
    assert config["model_type"] == hf.config.model_type and config["architectures"] == [type(hf).__name__]


def test_sharded_checkpoint_and_padded_vocabulary(megatron, tmp_path, token_ids):
    """A sharded index reads in; padded embedding rows (vocab 100 → 128) change no logit."""
    import sft_model

    hf = hf_model("llama")
    hf.save_pretrained(tmp_path / "hf", max_shard_size="100KB")
    assert (tmp_path / "hf" / "model.safetensors.index.json").is_file()
    nemo = sft_model.hf_to_nemo(tmp_path / "hf", tmp_path / "m.nemo")
    cfg = sft_model.read_config(nemo).replace(make_vocab_size_divisible_by=64)
    loaded = sft_model.load_nemo(nemo)
    padded = sft_model.build_model(cfg)
    from sft_model.weights import assign, canonical_tensors

    assign(padded.module, ((n, t.detach()) for n, t in canonical_tensors(loaded.model).items()))
    assert padded.padded_vocab_size == 128 and padded.module.embedding.word_embeddings.weight.shape[0] == 128
    with torch.no_grad():
        padded.module.embedding.word_embeddings.weight[VOCAB:] = 5.0  # even large padded rows must not matter
        padded.module.output_layer.weight[VOCAB:] = 5.0
        expected = hf(token_ids).logits
    ours = sft_model.compute_logits(padded, token_ids)
    assert (ours - expected).abs().max().item() <= 1e-4
    labels = token_ids.roll(-1, 1)
    position_ids = torch.arange(token_ids.shape[1]).expand_as(token_ids)
    loss = padded.module(token_ids, position_ids, None, labels=labels)  # megatron's own vocab-parallel loss
    ref = torch.nn.functional.cross_entropy(expected.reshape(-1, VOCAB), labels.reshape(-1), reduction="none")
    assert (loss.reshape(-1) - ref).abs().max().item() <= 1e-4


def test_tokenizer_and_chat_template_travel_in_and_out(megatron, tmp_path, sp_tokenizer):
    import shutil

    import sft_model

    hf = hf_model("llama")
    hf.save_pretrained(tmp_path / "hf")
    shutil.copyfile(sp_tokenizer, tmp_path / "hf" / "tokenizer.model")
    template = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}"
    (tmp_path / "hf" / "tokenizer_config.json").write_text(json.dumps({"chat_template": template, "eos_token": "</s>"}))
    nemo = sft_model.hf_to_nemo(tmp_path / "hf", tmp_path / "m.nemo")
    cfg = sft_model.read_config(nemo)
    assert cfg.tokenizer.library == "sentencepiece" and cfg.tokenizer.model.endswith("_tokenizer.model")
    assert cfg.tokenizer.model.startswith("nemo:") and len(cfg.tokenizer.model.split("_")[0]) == len("nemo:") + 32
    files = sft_model.extract_tokenizer(nemo, tmp_path / "tok")
    assert sorted(p.name for p in files.files) == ["tokenizer.model", "tokenizer_config.json"]
    assert files.files[0].read_bytes() == sp_tokenizer.read_bytes()
    sft_model.nemo_to_hf(nemo, tmp_path / "back")
    assert (tmp_path / "back" / "tokenizer.model").read_bytes() == sp_tokenizer.read_bytes()
    assert json.loads((tmp_path / "back" / "tokenizer_config.json").read_text())["chat_template"] == template


def test_unsupported_hf_models_are_one_line_errors(tmp_path):
    import sft_model
    from sft_model.errors import ModelError

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "t5"}))
    with pytest.raises(ModelError, match="'t5' is not supported"):
        sft_model.hf_to_nemo(tmp_path, tmp_path / "x.nemo")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_act": "gelu"}))
    with pytest.raises(ModelError, match="hidden_act 'gelu' is not supported"):
        sft_model.hf_to_nemo(tmp_path, tmp_path / "x.nemo")
    phi35 = hf_model("phi3").config.to_dict()  # Phi-3.5 / Phi-4-mini carry longrope factors
    phi35["rope_parameters"] = {"rope_type": "longrope", "rope_theta": 10000.0, "short_factor": [1.0] * 6,
                                "long_factor": [2.0] * 6, "partial_rotary_factor": 0.75}
    (tmp_path / "config.json").write_text(json.dumps(phi35))
    with pytest.raises(ModelError, match=r"RoPE scaling 'longrope'.*cannot express it") as refused:
        sft_model.hf_to_nemo(tmp_path, tmp_path / "x.nemo")
    assert "\n" not in str(refused.value) and not (tmp_path / "x.nemo").exists()
