"""Sliding-window attention: the mask, HF's windows in and out of ModelConfig, and proof that the window
changes the logits (test_hf_parity shows they then equal transformers')."""

from __future__ import annotations

import pytest
import torch

from .conftest import VOCAB, WINDOW, hf_model


def test_window_mask_counts_back_from_each_query():
    from sft_model.attention import window_blocked

    allowed = (~window_blocked(3, 6, 2)).int().tolist()  # the last 3 of 6 positions, 2 keys back
    assert allowed == [[0, 1, 1, 1, 0, 0], [0, 0, 1, 1, 1, 0], [0, 0, 0, 1, 1, 1]]
    assert torch.equal(window_blocked(4, 4, None), torch.ones(4, 4, dtype=torch.bool).triu(1))


def test_hf_windows_read_and_written_back():
    from sft_model.families.hf_options import window_from_hf, window_to_hf
    from sft_model.families.registry import get_families

    assert window_from_hf({"sliding_window": 4096, "num_hidden_layers": 2}) == {"window_size": [4095, 0]}
    assert window_from_hf({"sliding_window": None, "num_hidden_layers": 2}) == {}
    qwen = {"model_type": "qwen2", "use_sliding_window": True, "sliding_window": 8, "max_window_layers": 1,
            "num_hidden_layers": 3, "num_attention_heads": 4, "hidden_size": 64, "intermediate_size": 96,
            "vocab_size": VOCAB}
    cfg = get_families().for_hf_config(qwen).config_from_hf(qwen)
    assert cfg.window_size == [7, 0] and cfg.window_attn_skip_freq == [0, 1, 1]
    assert [cfg.layer_slides(n) for n in (1, 2, 3)] == [False, True, True]
    back = get_families().for_model_config(cfg).hf_config(cfg)
    assert back["sliding_window"] == 8 and back["use_sliding_window"] and back["max_window_layers"] == 1
    assert window_to_hf(cfg)["layer_types"] == ["full_attention", "sliding_attention", "sliding_attention"]
    off = {**qwen, "use_sliding_window": False}
    assert get_families().for_hf_config(off).config_from_hf(off).window_size is None


@pytest.mark.parametrize(("window", "message"), [([3], "window_size"), ([3, 1], "window_size"),
                                                 ([-2, 0], "window_size")])
def test_bad_windows_are_config_errors(window, message):
    from sft_model.config import ModelConfig
    from sft_model.errors import ModelConfigError

    with pytest.raises(ModelConfigError, match=message):
        ModelConfig(num_layers=2, hidden_size=64, num_attention_heads=4, ffn_hidden_size=96, window_size=window)
    with pytest.raises(ModelConfigError, match="window_attn_skip_freq"):
        ModelConfig(num_layers=2, hidden_size=64, num_attention_heads=4, ffn_hidden_size=96, window_size=[3, 0],
                    window_attn_skip_freq=[1, 0, 1])


def test_the_window_is_applied_beyond_its_length(megatron, tmp_path):
    """Without the window our logits would differ from transformers' after position WINDOW."""
    import sft_model
    from sft_model.builder import build_model
    from sft_model.weights import assign, canonical_tensors

    hf = hf_model("mistral-window")
    hf.save_pretrained(tmp_path / "hf")
    loaded = sft_model.load_nemo(sft_model.hf_to_nemo(tmp_path / "hf", tmp_path / "m.nemo"))
    assert loaded.config.window_size == [WINDOW - 1, 0] and loaded.config.window_attn_skip_freq is None
    unwindowed = build_model(loaded.config.replace(window_size=None), init=False)
    assign(unwindowed.module, ((n, t.detach()) for n, t in canonical_tensors(loaded.model).items()))
    ids = torch.randint(0, VOCAB, (1, 4 * WINDOW), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = hf(ids).logits
    ours, wide = sft_model.compute_logits(loaded, ids), sft_model.compute_logits(unwindowed, ids)
    assert (ours - expected).abs().max() <= 1e-4
    assert torch.allclose(ours[:, :WINDOW], wide[:, :WINDOW], atol=1e-6)  # inside the window nothing changes
    assert (wide[:, WINDOW:] - expected[:, WINDOW:]).abs().max() > 1e-2
