"""Activation recomputation (selective; full with uniform/block) reaches megatron-core's
TransformerConfig, recomputes in the backward pass, and leaves the gradients unchanged, dropout
included; sequence parallelism is dropped at TP=1, where megatron refuses it."""

from __future__ import annotations

import pytest
import torch

SETTINGS = {
    "selective": dict(activations_checkpoint_granularity="selective"),
    "full-uniform-1": dict(activations_checkpoint_granularity="full", activations_checkpoint_method="uniform",
                           activations_checkpoint_num_layers=1),
    "full-uniform-2": dict(activations_checkpoint_granularity="full", activations_checkpoint_method="uniform",
                           activations_checkpoint_num_layers=2),
    "full-block-1": dict(activations_checkpoint_granularity="full", activations_checkpoint_method="block",
                         activations_checkpoint_num_layers=1),
}


def _config(**settings):
    from sft_model.random_init import init_config

    return init_config("llama", 90, num_layers=2, hidden_size=64, num_attention_heads=4, num_query_groups=2,
                       ffn_hidden_size=128, precision="32").replace(hidden_dropout=0.1, attention_dropout=0.1,
                                                                    **settings)


def _gradients(settings: dict, counts: dict[str, int]) -> dict[str, torch.Tensor]:
    """Gradients of one forward/backward (dropout on, same seeds) and how often each module ran."""
    from sft_model import megatron_cpu
    from sft_model.builder import build_model

    megatron_cpu.model_parallel_manual_seed(123)  # attention dropout draws from the tracker's stream
    torch.manual_seed(0)
    model = build_model(_config(**settings)).module.train()
    layer = model.decoder.layers[0]
    for name, module in (("layer", layer.mlp), ("core_attention", layer.self_attention.core_attention)):
        module.register_forward_hook(lambda *_, name=name: counts.__setitem__(name, counts.get(name, 0) + 1))
    ids = torch.randint(0, 90, (2, 16), generator=torch.Generator().manual_seed(1))
    torch.manual_seed(2)
    model(ids, torch.arange(16).expand(2, 16), None, labels=ids.roll(-1, 1)).sum().backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("name", SETTINGS)
def test_recomputation_recomputes_and_keeps_gradients(megatron, name):
    plain_counts, counts = {}, {}
    plain = _gradients({}, plain_counts)
    recomputed = _gradients(SETTINGS[name], counts)
    assert plain_counts == {"layer": 1, "core_attention": 1}
    # selective recomputes core attention only; full, whole layers (layer 0 is in every setting's set)
    assert counts == ({"layer": 1, "core_attention": 2} if name == "selective" else {"layer": 2, "core_attention": 2})
    assert plain.keys() == recomputed.keys()
    for key, grad in plain.items():
        assert (grad - recomputed[key]).abs().max().item() <= 1e-6, key
    assert any(g.abs().sum() > 0 for g in plain.values())


def test_transformer_config_takes_the_settings(megatron):
    from sft_model.builder import transformer_config

    config = transformer_config(_config(sequence_parallel=True, **SETTINGS["full-block-1"]))
    assert (config.recompute_granularity, config.recompute_method, config.recompute_num_layers) == ("full", "block", 1)
    assert config.sequence_parallel is False  # TP=1: nothing to split, and megatron refuses it there
    config = transformer_config(_config(activations_checkpoint_granularity="selective",
                                        activations_checkpoint_num_layers=3))
    assert (config.recompute_granularity, config.recompute_num_layers) == ("selective", None)


@pytest.mark.parametrize(("settings", "message"), [
    (dict(activations_checkpoint_granularity="partial"), "activations_checkpoint_granularity: 'partial' is not one"),
    (dict(activations_checkpoint_granularity="full", activations_checkpoint_num_layers=1),
     "activations_checkpoint_method: None is not one of uniform, block"),
    (dict(activations_checkpoint_granularity="full", activations_checkpoint_method="block"),
     "activations_checkpoint_num_layers: expected a positive integer"),
])
def test_model_config_refuses_incomplete_recomputation(settings, message):
    from sft_model.errors import ModelConfigError

    with pytest.raises(ModelConfigError, match=message):
        _config(**settings)
