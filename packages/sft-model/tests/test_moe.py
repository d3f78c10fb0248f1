"""Mixture of experts: transformers 5's fused expert tensors convert like the hub's per-expert ones,
Qwen3-MoE's dense layers and routing come back in its HF config, and the router's load-balancing
loss megatron-core tracks is the Switch-Transformer formula on our router's probabilities."""

from __future__ import annotations

import json

import pytest
import torch

from .conftest import VOCAB, hf_model


def test_fused_expert_tensors_read_like_the_hub_layout(megatron, tmp_path):
    import sft_model
    from safetensors.torch import save_file
    from sft_model.weights import canonical_tensors

    hf = hf_model("mixtral")
    hf.save_pretrained(tmp_path / "hub")  # per expert: block_sparse_moe.experts.<e>.w1/w2/w3
    fused = tmp_path / "fused"  # transformers 5 in memory: mlp.experts.gate_up_proj [E, 2·ffn, h], down_proj
    fused.mkdir()
    state = {k: v.contiguous() for k, v in hf.state_dict().items()}
    assert any(k.endswith("mlp.experts.gate_up_proj") for k in state)
    save_file(state, fused / "model.safetensors", metadata={"format": "pt"})
    (fused / "config.json").write_text((tmp_path / "hub" / "config.json").read_text())
    hub = canonical_tensors(sft_model.load_nemo(sft_model.hf_to_nemo(tmp_path / "hub", tmp_path / "a.nemo")).model)
    ours = canonical_tensors(sft_model.load_nemo(sft_model.hf_to_nemo(fused, tmp_path / "b.nemo")).model)
    assert hub.keys() == ours.keys() and all(torch.equal(hub[k], ours[k]) for k in hub)
    assert "decoder.layers.1.mlp.experts.local_experts.3.linear_fc2.weight" in hub


def test_qwen3_moe_routing_and_dense_layers_round_trip():
    from sft_model.families.registry import get_families

    hf = hf_model("qwen3_moe").config.to_dict()
    family = get_families().for_hf_config(hf)
    cfg = family.config_from_hf(hf)
    assert (cfg.num_moe_experts, cfg.moe_router_topk, cfg.moe_ffn_hidden_size, cfg.ffn_hidden_size) == (4, 2, 48, 96)
    assert cfg.moe_layer_freq == [1, 0] and cfg.moe_router_pre_softmax and cfg.qk_layernorm
    back = family.hf_config(cfg)
    assert back["mlp_only_layers"] == [1] and back["norm_topk_prob"] is False and back["num_experts"] == 4
    assert back["moe_intermediate_size"] == 48 and back["intermediate_size"] == 96
    mixtral = hf_model("mixtral").config.to_dict()
    assert not get_families().for_hf_config(mixtral).config_from_hf(mixtral).moe_router_pre_softmax


def test_router_jitter_is_refused_in_one_line(tmp_path):
    import sft_model
    from sft_model.errors import ModelError

    config = {**hf_model("mixtral").config.to_dict(), "router_jitter_noise": 0.1}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="router_jitter_noise is not supported"):
        sft_model.hf_to_nemo(tmp_path, tmp_path / "x.nemo")


def test_tracked_load_balancing_loss_is_the_switch_formula(megatron):
    from megatron.core.transformer.moe.moe_logging import get_moe_metrics_tracker
    from sft_model.builder import build_model
    from sft_model.random_init import init_config

    torch.manual_seed(0)
    cfg = init_config("mixtral", VOCAB, num_layers=2, hidden_size=64, moe_aux_loss_coeff=0.5)
    model = build_model(cfg).module.train()
    seen = []
    model.decoder.layers[1].mlp.router.register_forward_hook(lambda m, args, out: seen.append(args[0].detach()))
    tracker = get_moe_metrics_tracker()
    tracker.clear()
    ids = torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(1))
    model(ids, torch.arange(12).expand(2, 12), None, labels=ids).sum().backward()
    x = seen[0].reshape(-1, 64).float()
    scores = torch.softmax(x @ model.decoder.layers[1].mlp.router.weight.float().t(), dim=-1)
    chosen = torch.zeros_like(scores).scatter(1, scores.topk(2, dim=-1).indices, 1.0)
    tokens, experts = scores.shape
    expected = experts / (2 * tokens * tokens) * (scores.sum(0) * chosen.sum(0)).sum()
    tracked = tracker.metrics["load_balancing_loss"].values
    assert torch.allclose(tracked[1], expected, rtol=1e-5)  # recorded without the coefficient
    assert tracked[0] > 0 and model.decoder.layers[0].mlp.router.weight.grad.abs().sum() > 0
    tracker.clear()
    from megatron.core.transformer.moe.moe_utils import MoEAuxLossAutoScaler

    MoEAuxLossAutoScaler.main_loss_backward_scale = None  # this backward ran outside megatron's schedules
