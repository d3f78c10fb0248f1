"""Reasoning: rendered as a Qwen3-style template renders it (ids equal transformers'), trained unless
``train_reasoning`` is off, and the empty ``<think></think>`` a hybrid template inserts never trained."""

from __future__ import annotations

import pytest
import transformers  # a dev dependency; sft_data never imports it
from sft_core import get_plugin_manager
from sft_data.config import DataConfig
from sft_data.errors import RecordError
from sft_data.formats.messages import MessagesFormat
from sft_data.registries import DataRegistries
from sft_data.samples import SampleBuilder
from sft_data.tokenizers.huggingface import HuggingFaceTokenizer
from sft_data.types import REASONING

# Qwen3's assistant turn (reasoning from reasoning_content, or split out of <think> in the content;
# an empty think block when there is none) with {% generation %} around what the assistant writes,
# and every turn's reasoning kept (a prefix-preserving training template).
QWEN3_LIKE = (
    "{%- for message in messages %}"
    "{%- set content = message.content if message.content is string else '' %}"
    "{%- if message.role in ['user', 'system'] %}"
    "{{- '<|im_start|>' + message.role + '\\n' + content + '<|im_end|>\\n' }}"
    "{%- elif message.role == 'assistant' %}"
    "{%- set reasoning_content = '' %}"
    "{%- if message.reasoning_content is string %}{%- set reasoning_content = message.reasoning_content %}"
    "{%- elif '</think>' in content %}"
    "{%- set reasoning_content = content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') %}"
    "{%- set content = content.split('</think>')[-1].lstrip('\\n') %}"
    "{%- endif %}"
    "{{- '<|im_start|>assistant\\n' }}{%- generation %}"
    "{{- '<think>\\n' + reasoning_content.strip('\\n') + '\\n</think>\\n\\n' + content.lstrip('\\n') }}"
    "{{- '<|im_end|>' }}{%- endgeneration %}{{- '\\n' }}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
CHATS = [
    [{"role": "user", "content": "What is two plus two?"},
     {"role": "assistant", "content": "Four.", "reasoning_content": "Two plus two is four."}],
    # an answer without reasoning (empty think block), then one with, newlines around the reasoning
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello!"},
     {"role": "assistant", "content": "Hello! How can I help you today?"},
     {"role": "user", "content": "Two plus two?"},
     {"role": "assistant", "content": "Four.", "reasoning_content": "\nThe quick brown fox: two plus two is four.\n"}],
    # reasoning written inside the content
    [{"role": "user", "content": "Thanks a lot!"},
     {"role": "assistant", "content": "<think>\nBe nice and brief.\n</think>\n\nSure, here it is."}],
]


@pytest.fixture
def registries():
    return DataRegistries.from_plugin_manager(get_plugin_manager(load_entrypoints=False))


@pytest.fixture
def pair(make_hf_tokenizer):
    from tokenizers import AddedToken, Tokenizer

    directory = make_hf_tokenizer(config={"eos_token": "<|im_end|>"})
    tok = Tokenizer.from_file(str(directory / "tokenizer.json"))
    tok.add_tokens([AddedToken("<think>", special=False), AddedToken("</think>", special=False)])  # as Qwen3's
    tok.save(str(directory / "tokenizer.json"))
    theirs = transformers.PreTrainedTokenizerFast(tokenizer_file=str(directory / "tokenizer.json"),
                                                  eos_token="<|im_end|>")
    return HuggingFaceTokenizer(directory), theirs


def build(tok, registries, messages, **settings):
    config = DataConfig(**{"chat_template": QWEN3_LIKE, "max_seq_length": 4096, **settings})
    return SampleBuilder(config, tok, MessagesFormat(), registries, detail=True).build({"messages": messages}).sample


def theirs_with_mask_without(theirs, messages, pattern):
    """transformers' ids, and its assistant mask with the tokens overlapping ``pattern``'s matches off."""
    import re

    out = theirs.apply_chat_template(messages, chat_template=QWEN3_LIKE, tokenize=True, return_dict=True,
                                     return_assistant_tokens_mask=True)
    text = theirs.apply_chat_template(messages, chat_template=QWEN3_LIKE, tokenize=False)
    offsets = theirs(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    cut = [m.span() for m in re.finditer(pattern, text)]
    mask = [bool(m) and not any(a < e and s < b for a, b in cut) for m, (s, e) in
            zip(out["assistant_masks"], offsets, strict=True)]
    return list(out["input_ids"]), mask, cut


def last_answer(messages) -> tuple[str, str]:
    """The last assistant message's reasoning and answer, stripped."""
    message = messages[-1]
    reasoning, _, answer = message["content"].rpartition("</think>")
    return (message.get("reasoning_content") or reasoning.replace("<think>", "")).strip(), answer.strip()


def trained_text(tok, sample) -> str:
    return tok.decode([i for i, m in zip(sample.input_ids, sample.loss_mask, strict=True) if m])


@pytest.mark.parametrize("case", range(len(CHATS)))
def test_ids_equal_transformers_and_an_empty_think_block_is_never_trained(pair, registries, case):
    ours, theirs = pair
    sample = build(ours, registries, CHATS[case])
    ids, mask, empty = theirs_with_mask_without(theirs, CHATS[case], r"<think>\s*</think>\s*")
    assert sample.input_ids == ids
    assert sample.loss_mask == mask
    assert bool(empty) == (case == 1)
    reasoning, answer = last_answer(CHATS[case])
    assert reasoning in trained_text(ours, sample) and answer in trained_text(ours, sample)


@pytest.mark.parametrize("case", range(len(CHATS)))
def test_train_reasoning_off_keeps_reasoning_and_its_tags_as_context(pair, registries, case):
    ours, theirs = pair
    sample = build(ours, registries, CHATS[case], train_reasoning=False)
    ids, mask, blocks = theirs_with_mask_without(theirs, CHATS[case], r"(?s)<think>.*?</think>\s*")
    assert sample.input_ids == ids and sample.loss_mask == mask
    assert blocks and any(mask)
    reasoning, answer = last_answer(CHATS[case])
    trained = trained_text(ours, sample)
    assert reasoning not in trained and "<think>" not in trained and answer in trained


def test_reasoning_tokens_are_marked_and_content_think_equals_reasoning_content(pair, registries):
    ours, _ = pair
    inline = build(ours, registries, CHATS[2])
    separate = build(ours, registries, [CHATS[2][0], {"role": "assistant", "content": "Sure, here it is.",
                                                      "reasoning_content": "Be nice and brief."}])
    assert inline.input_ids == separate.input_ids and inline.loss_mask == separate.loss_mask
    reasoning = [i for i, kind in zip(inline.input_ids, inline.kinds, strict=True) if kind == REASONING]
    assert ours.decode(reasoning) == "<think>\nBe nice and brief.\n</think>\n\n"


def test_a_template_that_drops_earlier_reasoning_is_refused(pair, registries):
    # Qwen3's own template keeps reasoning only after the last user query: earlier reasoning is lost
    ours, _ = pair
    dropping = QWEN3_LIKE.replace("{{- '<think>\\n' + reasoning_content.strip('\\n') + '\\n</think>\\n\\n' + ",
                                  "{{- ('<think>\\n' + reasoning_content.strip('\\n') + '\\n</think>\\n\\n' "
                                  "if loop.last else '') + ")
    messages = [*CHATS[0], {"role": "user", "content": "And three?"},
                {"role": "assistant", "content": "Five.", "reasoning_content": "Two plus three."}]
    with pytest.raises(RecordError, match=r"drops messages\[1\]\.reasoning_content"):
        build(ours, registries, messages, chat_template=dropping)


@pytest.mark.parametrize(
    ("content", "trained_when_off"),
    [
        # DeepSeek-R1 style: no opening tag; the reasoning and its closing tag are context
        ("Let me think.</think>\n\nFour.", [("Four.", True)]),
        # text before the think block stays trained; the block is context
        ("Sure. <think>hmm</think>Four.", [("Sure. ", True), ("<think>hmm</think>", False), ("Four.", True)]),
    ],
    ids=["no-opening-tag", "text-before"],
)
def test_reasoning_in_content_under_a_template_that_prints_it_verbatim(char_tok, expect, registries, content,
                                                                       trained_when_off):
    messages = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": content}]
    prompt = [("<|im_start|>", False), ("user\nQ", False), ("<|im_end|>", False), ("\n", False),
              ("<|im_start|>", False), ("assistant\n", False)]
    end = [("<|im_end|>", True), ("\n", False)]
    builder = SampleBuilder(DataConfig(chat_template="chatml"), char_tok, MessagesFormat(), registries)
    on = builder.build({"messages": messages}).sample
    assert (on.input_ids, on.loss_mask) == expect([*prompt, (content, True), *end])
    builder = SampleBuilder(DataConfig(chat_template="chatml", train_reasoning=False), char_tok, MessagesFormat(),
                            registries)
    off = builder.build({"messages": messages}).sample
    untrained_reasoning = [] if content.startswith("Sure") else [(content[:content.index("Four.")], False)]
    assert (off.input_ids, off.loss_mask) == expect([*prompt, *untrained_reasoning, *trained_when_off, *end])
