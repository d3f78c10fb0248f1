"""Jinja templates through the sample pipeline: the tokenizer's own template by default, errors located."""

from __future__ import annotations

import json

import pytest
from sft_core import get_plugin_manager
from sft_data.config import DataConfig
from sft_data.errors import RecordProblem, SftError
from sft_data.preview import preview
from sft_data.registries import DataRegistries
from sft_data.tokenizers.huggingface import HuggingFaceTokenizer

# A Llama-3-like template without generation markers: spans come from incremental rendering.
TOKENIZER_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' }}"
    "{{ m['content'] | trim + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)
RECORDS = [
    {"messages": [{"role": "system", "content": "Be nice."}, {"role": "user", "content": "Hello!"},
                  {"role": "assistant", "content": "How can I help you today?"}]},
    {"messages": [{"role": "user", "content": "What is two plus two?"},
                  {"role": "assistant", "content": "Two plus two is four.", "weight": 0},
                  {"role": "user", "content": "Thanks"}, {"role": "assistant", "content": "Sure!"}]},
]


@pytest.fixture
def registries():
    return DataRegistries.from_plugin_manager(get_plugin_manager(load_entrypoints=False))


def test_tokenizer_template_is_the_default(tmp_path, make_hf_tokenizer, registries):
    tok = HuggingFaceTokenizer(make_hf_tokenizer(config={
        "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "chat_template": TOKENIZER_TEMPLATE,
    }))
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in RECORDS) + "\n", encoding="utf-8")
    items = list(preview(data, tok, DataConfig(), n=2, registries=registries))
    assert not any(isinstance(i, RecordProblem) for i in items)
    answers = ["".join(t for t, trained, _ in item.pieces if trained) for item in items]
    # The weight-0 answer is context; each trained answer ends with its <|eot_id|>.
    assert answers == ["How can I help you today?<|eot_id|>", "Sure!<|eot_id|>"]
    assert all(item.pieces[0][0].startswith("<|begin_of_text|>") for item in items)


def test_undeterminable_template_fails_with_the_record_location(tmp_path, make_hf_tokenizer, registries):
    unstable = "{{ messages | length }}{% for m in messages %}{{ m['role'] + ': ' + m['content'] }}{% endfor %}"
    tok = HuggingFaceTokenizer(make_hf_tokenizer(config={"chat_template": unstable}))
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps(RECORDS[0]) + "\n", encoding="utf-8")
    with pytest.raises(SftError, match=r"train\.jsonl:1: chat template 'tokenizer': the assistant spans cannot"):
        list(preview(data, tok, DataConfig(chat_template="tokenizer"), n=1, registries=registries))
