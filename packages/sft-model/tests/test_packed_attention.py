"""A packed row's loss equals the token-weighted loss of its sequences run one by one."""

from __future__ import annotations

import pytest
import torch

LENGTHS = [5, 9, 4]  # 18 real tokens in a row of 24: the last 6 are padding
SEQ = 24


# (family, config changes): every family, and sliding windows shorter than the longest sequence (9)
MODELS = {"llama": ("llama", {}), "gpt2": ("gpt2", {}), "qwen3": ("qwen3", {}), "phi3": ("phi3", {}),
          "mistral-window": ("llama", {"window_size": [3, 0]}),
          "gemma2": ("gemma2", {"window_size": [3, 0]}), "gemma3": ("gemma3", {"window_size": [3, 0]}),
          "mixtral": ("mixtral", {}), "qwen3_moe": ("qwen3_moe", {"moe_layer_freq": [1, 0]}),
          "alternating-window": ("llama", {"window_size": [2, 0], "window_attn_skip_freq": [1, 0]})}


@pytest.fixture(scope="module", params=list(MODELS))
def model(request, megatron):
    from sft_model.builder import build_model
    from sft_model.random_init import init_config

    torch.manual_seed(3)
    family, changes = MODELS[request.param]
    cfg = init_config(family, 90, num_layers=2, hidden_size=64, encoder_seq_length=64, **changes)
    return build_model(cfg).module.eval()


def test_packed_row_loss_equals_separate_runs(model):
    from sft_model.packed_attention import packed_model_inputs

    torch.manual_seed(4)
    seqs = [torch.randint(0, 90, (n + 1,)) for n in LENGTHS]  # tokens + the next token as label
    tokens = torch.zeros(1, SEQ, dtype=torch.long)
    labels = torch.zeros(1, SEQ, dtype=torch.long)
    mask = torch.zeros(1, SEQ)
    start = 0
    for s in seqs:
        n = len(s) - 1
        tokens[0, start:start + n], labels[0, start:start + n], mask[0, start:start + n] = s[:-1], s[1:], 1
        start += n
    tokens[0, start:] = 7  # padding tokens must not leak into real ones
    with torch.no_grad():
        packed = model(tokens, labels=labels, **packed_model_inputs([LENGTHS], SEQ))
        packed_loss = (packed * mask).sum() / mask.sum()
        total, count = 0.0, 0
        for s in seqs:
            ids = s[:-1].unsqueeze(0)
            pos = torch.arange(ids.shape[1]).unsqueeze(0)
            losses = model(ids, pos, None, labels=s[1:].unsqueeze(0))
            total, count = total + losses.sum(), count + losses.numel()
    assert abs(packed_loss.item() - (total / count).item()) <= 1e-5


def test_packed_inputs_shapes_and_positions():
    from sft_model.packed_attention import block_causal_mask, packed_position_ids, packed_seq_params

    pos = packed_position_ids([[2, 3], [5]], 6)
    assert pos.tolist() == [[0, 1, 0, 1, 2, 0], [0, 1, 2, 3, 4, 0]]
    mask = block_causal_mask([[2, 3]], 6)[0, 0]
    allowed = (~mask).int().tolist()
    assert allowed[3] == [0, 0, 1, 1, 0, 0] and allowed[1] == [1, 1, 0, 0, 0, 0] and allowed[5] == [0, 0, 0, 0, 0, 1]
    params = packed_seq_params([2, 3], 6)
    assert params.qkv_format == "thd" and params.cu_seqlens_q.tolist() == [0, 2, 5, 6] and params.max_seqlen_q == 3
    with pytest.raises(ValueError, match="sum to 7"):
        packed_position_ids([[4, 3]], 6)
