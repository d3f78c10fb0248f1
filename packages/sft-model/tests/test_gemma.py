"""Gemma 2 and 3: every feature the conversion switches on changes the logits (test_hf_parity shows
that with all of them on they equal transformers'), and the HF config comes back the same."""

from __future__ import annotations

import pytest
import torch

from .conftest import VOCAB, hf_model

FEATURES = {
    "gemma2": {"embedding_multiplier": None, "layernorm_zero_centered_gamma": False, "softmax_scale": None,
               "attn_logit_softcapping": None, "final_logit_softcapping": None, "window_size": None},
    "gemma3": {"embedding_multiplier": None, "layernorm_zero_centered_gamma": False, "softmax_scale": None,
               "window_size": None, "rotary_base_local": None, "seq_len_interpolation_factor": None},
}


@pytest.fixture(scope="module", params=list(FEATURES))
def converted(request, megatron, tmp_path_factory):
    import sft_model

    d = tmp_path_factory.mktemp(request.param)
    hf = hf_model(request.param, tied=True, seed=5)
    hf.save_pretrained(d / "hf")
    return request.param, hf, sft_model.load_nemo(sft_model.hf_to_nemo(d / "hf", d / "m.nemo"))


def test_each_feature_changes_the_logits(converted):
    import sft_model
    from sft_model.builder import build_model
    from sft_model.weights import assign, canonical_tensors

    kind, hf, loaded = converted
    ids = torch.randint(0, VOCAB, (2, 20), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = hf(ids).logits
    assert (sft_model.compute_logits(loaded, ids) - expected).abs().max() <= 1e-4
    weights = {n: t.detach() for n, t in canonical_tensors(loaded.model).items()}
    for field, off in FEATURES[kind].items():
        assert getattr(loaded.config, field) not in (None, False), field  # the conversion switched it on
        changed = build_model(loaded.config.replace(**{field: off}), init=False)
        assign(changed.module, weights.items())
        assert (sft_model.compute_logits(changed, ids) - expected).abs().max() > 1e-3, field
    # tanh and erf GELU differ by ~1e-4 here, too little to tell through the logits: look at the MLP
    from sft_model.builder import gelu_tanh

    assert loaded.model.decoder.layers[0].mlp.activation_func is gelu_tanh


def test_hf_config_comes_back(converted, tmp_path):
    import json

    from sft_model.families.registry import get_families

    _, hf, loaded = converted
    back = get_families().for_model_config(loaded.config).hf_config(loaded.config)
    again = get_families().for_hf_config(back).config_from_hf(back)
    assert again.replace(hf_config=None) == loaded.config.replace(hf_config=None, tokenizer=again.tokenizer)
    reloaded = type(hf.config).from_dict(json.loads(json.dumps(back)))
    for key in ("layer_types", "sliding_window", "query_pre_attn_scalar", "attn_logit_softcapping",
                "final_logit_softcapping", "head_dim", "rope_parameters"):
        assert getattr(reloaded, key) == getattr(hf.config, key), key


def test_multimodal_gemma3_is_refused_in_one_line(tmp_path):
    import json

    import sft_model
    from sft_model.errors import ModelError

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gemma3", "text_config": {}}))
    with pytest.raises(ModelError, match="'gemma3' is not supported"):
        sft_model.hf_to_nemo(tmp_path, tmp_path / "x.nemo")
