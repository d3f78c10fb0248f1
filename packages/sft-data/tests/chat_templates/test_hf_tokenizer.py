"""HuggingFaceTokenizer: special tokens and chat template read from the files beside tokenizer.json."""

from __future__ import annotations

import json

import pytest
from sft_core import get_plugin_manager
from sft_data.errors import SftError
from sft_data.registries import DataRegistries
from sft_data.tokenizers.huggingface import HuggingFaceTokenizer
from sft_data.tokenizers.loading import load_tokenizer

TEMPLATE = "{% for m in messages %}{{ m['content'] }}{% endfor %}"


def test_special_tokens_from_tokenizer_config(make_hf_tokenizer):
    directory = make_hf_tokenizer(config={
        "bos_token": "<s>",
        # The serialized AddedToken form transformers writes.
        "eos_token": {"content": "</s>", "lstrip": False, "rstrip": False, "special": True},
        "pad_token": "<pad>",
        "chat_template": TEMPLATE,
    })
    tok = HuggingFaceTokenizer(directory)
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<s>", "</s>", "<pad>")
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (0, 1, 2)  # the trainer's special_tokens order
    assert tok.chat_template == TEMPLATE
    assert "<|im_start|>" in tok.special_tokens and "<s>" in tok.special_tokens
    assert tok.files() == [directory / "tokenizer.json", directory / "tokenizer_config.json"]


def test_special_tokens_map_is_the_fallback(make_hf_tokenizer):
    directory = make_hf_tokenizer(config={"eos_token": "<|im_end|>"})
    (directory / "special_tokens_map.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>"}))
    tok = HuggingFaceTokenizer(directory)
    assert (tok.bos_token, tok.eos_token, tok.pad_id) == ("<s>", "<|im_end|>", None)


def test_chat_template_jinja_file_wins_over_the_config(make_hf_tokenizer):
    only_file = HuggingFaceTokenizer(make_hf_tokenizer("a", config={}, template_file=TEMPLATE))
    assert only_file.chat_template == TEMPLATE
    both = HuggingFaceTokenizer(make_hf_tokenizer("b", config={"chat_template": "old"}, template_file=TEMPLATE))
    assert both.chat_template == TEMPLATE
    assert (both.directory / "chat_template.jinja") in both.files()
    named = make_hf_tokenizer("c", config={"chat_template": [{"name": "default", "template": TEMPLATE}]})
    assert HuggingFaceTokenizer(named).chat_template == TEMPLATE
    assert HuggingFaceTokenizer(make_hf_tokenizer("d")).chat_template is None


def test_control_text_in_user_data_is_not_a_control_id(make_hf_tokenizer):
    tok = HuggingFaceTokenizer(make_hf_tokenizer(config={"bos_token": "<s>"}))
    ids = tok.encode("a<|im_start|>b</s>")
    assert tok.token_to_id("<|im_start|>") not in ids and tok.token_to_id("</s>") not in ids
    assert tok.decode(ids) == "a<|im_start|>b</s>"


def test_loaded_through_the_registered_loader(make_hf_tokenizer):
    directory = make_hf_tokenizer(config={"eos_token": "</s>"})
    loaders = DataRegistries.from_plugin_manager(get_plugin_manager(load_entrypoints=False)).tokenizers
    for path in (directory, directory / "tokenizer.json"):
        tok = load_tokenizer(path, loaders)
        assert tok.kind == "huggingface" and tok.eos_id == 1


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: (d / "tokenizer.json").write_text("{broken\n json"), r"tokenizer\.json: not a Hugging Face tokenizer\.json"),
        (lambda d: (d / "tokenizer.json").write_text('{"model": 3}'), r"tokenizer\.json: not a Hugging Face tokenizer\.json"),
        (lambda d: (d / "tokenizer_config.json").write_text("{nope"), r"tokenizer_config\.json: invalid JSON"),
        (lambda d: (d / "tokenizer_config.json").write_text("[1, 2]"), r"tokenizer_config\.json: expected a JSON object"),
        (lambda d: (d / "tokenizer_config.json").write_text('{"bos_token": "<bos>"}'),
         r"bos_token '<bos>' from the tokenizer config is not in the vocabulary"),
        (lambda d: (d / "chat_template.jinja").write_bytes(b"\xff\xfe bad"), r"chat_template\.jinja: cannot read"),
    ],
    ids=["not-json", "not-a-tokenizer", "config-not-json", "config-not-object", "unknown-bos", "template-not-utf8"],
)
def test_invalid_files_are_one_line_errors(make_hf_tokenizer, setup, message):
    directory = make_hf_tokenizer(config={})
    setup(directory)
    with pytest.raises(SftError, match=message) as info:
        HuggingFaceTokenizer(directory)
    assert "\n" not in str(info.value)


TEXTS = ["Hello! How can I help you today?\n\n  Two plus two is four.", "Réponse, café ✓ — 好的 🙂\tok",
         "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n the quick brown fox<|im_end|>\n", ""]


@pytest.mark.parametrize("text", TEXTS)
def test_span_edge_lookup_follows_the_offset_rule(make_hf_tokenizer, text):
    # The tokenizer reads token offsets only at span edges; it must agree with the rule applied to
    # every token's offsets (sft_data.encoding.trained_tokens), whatever the spans.
    import random
    import re

    import numpy as np
    from sft_data.encoding import trained_tokens
    from tokenizers import Tokenizer

    directory = make_hf_tokenizer(config={})
    tok = HuggingFaceTokenizer(directory)
    controls = [m.span() for m in re.finditer(r"<\|im_(?:start|end)\|>", text)]  # written by a template
    (ids, lookup), = tok.encode_with_controls([text], [controls], [False])
    whole = Tokenizer.from_file(str(directory / "tokenizer.json")).encode(text, add_special_tokens=False)
    assert ids == whole.ids
    offsets = np.asarray(whole.offsets, dtype=np.int64).reshape(-1, 2)
    rng = random.Random(0)
    for _ in range(300):
        cuts = sorted(rng.sample(range(len(text) + 1), k=min(len(text) + 1, 2 * rng.randint(1, 3))))
        spans = [(a, b) for a, b in zip(cuts[::2], cuts[1::2], strict=False) if a < b]
        assert lookup.trained_mask(spans) == trained_tokens(offsets, spans).tolist(), spans


def test_offsets_are_untrimmed_and_ids_unchanged_by_the_post_processor(make_hf_tokenizer):
    # GPT-2's tokenizer.json trims spaces off offsets (ByteLevel trim_offsets): the token of an
    # answer's trailing spaces would then cover no character, sit after the span, and go untrained.
    from sft_data.encoding import ChatEncoder
    from sft_data.templates.jinja import JinjaChatTemplate
    from sft_data.types import Conversation, Turn
    from tokenizers import Tokenizer, processors

    directory = make_hf_tokenizer(config={"eos_token": "<|im_end|>"})
    raw = Tokenizer.from_file(str(directory / "tokenizer.json"))
    raw.post_processor = processors.ByteLevel(trim_offsets=True)
    raw.save(str(directory / "tokenizer.json"))
    tok = HuggingFaceTokenizer(directory)
    raw.encode_special_tokens = True  # as tok.encode: special-token text is text
    for text in TEXTS:
        assert tok.encode(text) == raw.encode(text, add_special_tokens=False).ids
    content_only = (
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' }}"
        "{% if m['role'] == 'assistant' %}{% generation %}{{ m['content'] }}{% endgeneration %}"
        "{% else %}{{ m['content'] }}{% endif %}{{ '<|im_end|>\\n' }}{% endfor %}"
    )
    conv = Conversation((Turn("user", "Hi"), Turn("assistant", "Sure, here it is.   "), Turn("user", "Thanks")))
    sample = ChatEncoder(tok).encode(JinjaChatTemplate(content_only).render(conv, tok))
    trained = [i for i, m in zip(sample.input_ids, sample.loss_mask, strict=True) if m]
    assert tok.decode(trained) == "Sure, here it is.   "
