"""ModelConfig: validation, reference keys, YAML round trip, vocabulary padding."""

from __future__ import annotations

import pytest
import yaml
from sft_model.config import ModelConfig
from sft_model.errors import ModelConfigError

REFERENCE_YAML = """
mcore_gpt: true
transformer_engine: true
num_layers: 2
hidden_size: 64
ffn_hidden_size: 172
num_attention_heads: 4
num_query_groups: 2
kv_channels: null
encoder_seq_length: 4096
max_position_embeddings: 4096
position_embedding_type: rope
rotary_base: 500000.0
rotary_percentage: 1.0
normalization: rmsnorm
layernorm_epsilon: 1.0e-05
activation: fast-swiglu
bias: false
share_embeddings_and_output_weights: false
make_vocab_size_divisible_by: 128
precision: bf16
tokenizer:
  library: sentencepiece
  type: null
  model: nemo:0123456789abcdef0123456789abcdef_tokenizer.model
  vocab_file: null
  merge_file: null
  sentencepiece_legacy: false
data:
  chat: true
  chat_prompt_tokens: {system_turn_start: "<extra_id_0>", turn_start: "<extra_id_1>"}
optim: {name: distributed_fused_adam, lr: 3.0e-05}
"""


def test_reference_yaml_reads_and_round_trips():
    cfg = ModelConfig.from_yaml(REFERENCE_YAML)
    assert cfg.num_query_groups == 2 and cfg.kv_channels == 16 and cfg.gated
    assert cfg.tokenizer.file_refs() == ["nemo:0123456789abcdef0123456789abcdef_tokenizer.model"]
    assert cfg.extra["optim"]["name"] == "distributed_fused_adam"
    assert cfg.data["chat_prompt_tokens"]["turn_start"] == "<extra_id_1>"
    again = ModelConfig.from_yaml(cfg.to_yaml())
    assert again == cfg
    written = yaml.safe_load(cfg.to_yaml())
    reference_keys = set(yaml.safe_load(REFERENCE_YAML))
    assert reference_keys <= set(written)


@pytest.mark.parametrize(("change", "message"), [
    ({"num_layers": 0}, "num_layers"),
    ({"num_query_groups": 3}, "multiple of num_query_groups"),
    ({"normalization": "batchnorm"}, "normalization"),
    ({"activation": "tanh"}, "activation"),
    ({"position_embedding_type": "alibi"}, "position_embedding_type"),
    ({"precision": "fp8"}, "precision"),
    ({"hidden_dropout": 1.5}, "hidden_dropout"),
    ({"hidden_size": "64"}, "hidden_size"),
])
def test_invalid_values_name_the_key(change, message):
    base = dict(num_layers=2, hidden_size=64, num_attention_heads=4, ffn_hidden_size=128)
    with pytest.raises(ModelConfigError, match=message):
        ModelConfig(**{**base, **change})


def test_missing_required_key_and_bad_yaml():
    with pytest.raises(ModelConfigError, match="missing hidden_size"):
        ModelConfig.from_dict({"num_layers": 2, "num_attention_heads": 4, "ffn_hidden_size": 8})
    with pytest.raises(ModelConfigError, match="not valid YAML"):
        ModelConfig.from_yaml("num_layers: [2")


def test_padded_vocab_does_not_depend_on_tensor_parallelism():
    cfg = ModelConfig(num_layers=1, hidden_size=64, num_attention_heads=4, ffn_hidden_size=8, vocab_size=1000)
    assert cfg.padded_vocab_size() == 1024
    assert cfg.replace(make_vocab_size_divisible_by=8).padded_vocab_size() == 1000


def test_openai_gelu_means_tanh_gelu():
    cfg = ModelConfig(num_layers=1, hidden_size=8, num_attention_heads=2, ffn_hidden_size=8, activation="gelu",
                      openai_gelu=True)
    assert cfg.activation == "approx-gelu"
