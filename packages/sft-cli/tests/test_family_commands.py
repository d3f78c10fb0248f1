"""`sft init --family F` for every newer family, then `sft convert nemo-to-hf`: transformers loads the
result as that family's model and computes our logits."""

from __future__ import annotations

import json

import pytest
import torch

FAMILIES = {"qwen3": "Qwen3ForCausalLM", "phi3": "Phi3ForCausalLM", "gemma2": "Gemma2ForCausalLM",
            "gemma3": "Gemma3ForCausalLM", "mixtral": "MixtralForCausalLM", "qwen3_moe": "Qwen3MoeForCausalLM"}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_init_convert_and_load_in_transformers(run, tok_model, tmp_path, family):
    import transformers
    from sft_model import compute_logits, load_nemo

    nemo = tmp_path / f"{family}.nemo"
    result = run("init", "--family", family, "--tokenizer", tok_model, "--output", nemo, "--num-layers", "2",
                 "--hidden-size", "64", "--num-attention-heads", "4", "--num-query-groups", "2", "--seq-length", "64")
    assert result.exit_code == 0, result.output
    info = json.loads(run("inspect", nemo, "--json").output)
    assert info["family"] == family
    result = run("convert", "nemo-to-hf", nemo, tmp_path / "hf")
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["architectures"] == [FAMILIES[family]]
    hf = getattr(transformers, FAMILIES[family]).from_pretrained(tmp_path / "hf").eval()
    ids = torch.randint(0, 800, (1, 40), generator=torch.Generator().manual_seed(0))  # longer than any window
    with torch.no_grad():
        expected = hf(ids).logits
    assert (compute_logits(load_nemo(nemo), ids) - expected).abs().max() <= 1e-4
