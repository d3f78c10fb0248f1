"""Token-exact NeMo chat masks, hand-checked against the reference's masking rules."""

from __future__ import annotations

import pytest
from sft_data.config import DataConfig
from sft_data.errors import RecordError
from sft_data.formats.nemo_chat import NemoChatFormat
from sft_data.registries import DataRegistries
from sft_data.samples import SampleBuilder

HEADER = [("<extra_id_0>", False), ("System", False), ("\n", False), ("You help.", False), ("\n", False)]


def build(record, tokenizer, **config):
    cfg = DataConfig(**config)
    builder = SampleBuilder(cfg, tokenizer, NemoChatFormat(), DataRegistries.from_plugin_manager())
    return builder.build(record)


def turn(speaker, value, name_trained=False, value_trained=False, start_trained=False):
    return [("<extra_id_1>", start_trained), (speaker, name_trained), ("\n", name_trained),
            (value, value_trained), ("\n", value_trained)]


def test_multi_turn_masks_masked_role_keeps_turn_start_and_trailing_turn_start_trained(char_tokenizer, expand_pieces):
    record = {"system": "You help.", "mask": "User", "conversations": [
        {"from": "User", "value": "hi"}, {"from": "Assistant", "value": "yo"},
        {"from": "User", "value": "ok"}, {"from": "Assistant", "value": "fine"}]}
    built = build(record, char_tokenizer)
    expected = expand_pieces(
        HEADER
        + turn("User", "hi")
        + turn("Assistant", "yo", value_trained=True)
        + turn("User", "ok", start_trained=True)  # its turn_start ends the assistant's turn
        + turn("Assistant", "fine", value_trained=True)
        + [("<extra_id_1>", True)]  # trailing turn_start: the model learns to end its turn
    )
    assert (built.sample.input_ids, built.sample.loss_mask) == expected
    assert built.dropped is None


def test_masked_role_at_turn_one_is_fully_masked_and_turn_zero_is_context(char_tokenizer, expand_pieces):
    record = {"system": "You help.", "mask": "User", "conversations": [
        {"from": "Assistant", "value": "hello"}, {"from": "User", "value": "q"},
        {"from": "Assistant", "value": "a"}, {"from": "User", "value": "bye"}]}
    built = build(record, char_tokenizer)
    expected = expand_pieces(
        HEADER + turn("Assistant", "hello") + turn("User", "q")
        + turn("Assistant", "a", value_trained=True) + turn("User", "bye", start_trained=True)
    )  # last speaker is masked: no trailing turn_start
    assert (built.sample.input_ids, built.sample.loss_mask) == expected


def test_value_to_text_label_is_context(char_tokenizer, expand_pieces):
    record = {"system": "You help.", "mask": "User", "type": "VALUE_TO_TEXT", "conversations": [
        {"from": "User", "value": "hi"},
        {"from": "Assistant", "value": "yo", "label": "q:9"}]}
    built = build(record, char_tokenizer)
    expected = expand_pieces(
        HEADER + turn("User", "hi")
        + [("<extra_id_1>", False), ("Assistant", False), ("\n", False),
           ("<extra_id_2>", False), ("q:9", False), ("\n", False), ("yo", True), ("\n", True)]
        + [("<extra_id_1>", True)]
    )
    assert (built.sample.input_ids, built.sample.loss_mask) == expected


def test_text_to_value_trains_only_the_label(char_tokenizer, expand_pieces):
    record = {"system": "You help.", "mask": "User", "type": "TEXT_TO_VALUE", "conversations": [
        {"from": "User", "value": "hi"},
        {"from": "Assistant", "value": "yo", "label": "q:9"}]}
    built = build(record, char_tokenizer)
    expected = expand_pieces(
        HEADER + turn("User", "hi")
        + [("<extra_id_1>", False), ("Assistant", False), ("\n", False), ("yo", False), ("\n", False),
           ("<extra_id_2>", False), ("q:9", True), ("\n", True)]
        + [("<extra_id_1>", True)]
    )
    assert (built.sample.input_ids, built.sample.loss_mask) == expected


def test_custom_chat_prompt_tokens(char_tokenizer, expand_pieces):
    record = {"system": "", "conversations": [{"from": "User", "value": "a"}, {"from": "Assistant", "value": "b"}]}
    tokens = {"system_turn_start": "<s>", "turn_start": "<|im_start|>", "label_start": "<extra_id_2>",
              "end_of_turn": "<|im_end|>", "end_of_name": ":"}
    built = build(record, char_tokenizer, chat_prompt_tokens=tokens)
    expected = expand_pieces(
        [("<s>", False), ("System", False), (":", False), ("<|im_end|>", False),
         ("<|im_start|>", False), ("User", False), (":", False), ("a", False), ("<|im_end|>", False),
         ("<|im_start|>", False), ("Assistant", False), (":", False), ("b", True), ("<|im_end|>", True),
         ("<|im_start|>", True)]
    )
    assert (built.sample.input_ids, built.sample.loss_mask) == expected


def test_speaker_matching_is_exact_not_substring(char_tokenizer):
    # The reference's substring test treated "Use" as masked under mask "User".
    record = {"system": "", "mask": "User", "conversations": [
        {"from": "User", "value": "a"}, {"from": "Use", "value": "b"}]}
    built = build(record, char_tokenizer)
    ids, mask = built.sample.input_ids, built.sample.loss_mask
    trained_text = char_tokenizer.decode([i for i, m in zip(ids, mask, strict=True) if m])
    assert trained_text == "b\n<extra_id_1>"


def test_all_trained_tokens_truncated_is_dropped_not_trained(char_tokenizer):
    record = {"system": "a long system prompt", "conversations": [
        {"from": "User", "value": "question"}, {"from": "Assistant", "value": "answer"}]}
    built = build(record, char_tokenizer, max_seq_length=20)
    assert built.sample.truncated
    assert len(built.sample.input_ids) == 20
    assert not any(built.sample.loss_mask)
    assert built.dropped == "no trained tokens left after truncation"


def test_overlong_drop_policy(char_tokenizer):
    record = {"system": "", "conversations": [{"from": "User", "value": "q" * 50}, {"from": "Assistant", "value": "a"}]}
    built = build(record, char_tokenizer, max_seq_length=20, overlong="drop")
    assert built.dropped.startswith("longer than max_seq_length")


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"system": "", "conversations": []}, "empty conversation"),
        ({"system": "", "conversations": [{"from": "User", "value": "a"}]}, "no assistant turn"),
        ({"system": "", "conversations": [{"from": "User"}]}, "missing field conversations[0].'value'"),
        ({"system": "", "conversations": [{"from": "User", "value": 3}]}, "must be a string, got number"),
        ({"system": "", "type": "BOTH", "conversations": [{"from": "A", "value": "a"}]}, "field 'type'"),
        ({"system": 5, "conversations": [{"from": "A", "value": "a"}]}, "field 'system'"),
        ({"system": "", "conversations": ["hi"]}, "conversations[0] must be an object"),
    ],
)
def test_invalid_nemo_chat_records(record, reason, char_tokenizer):
    with pytest.raises(RecordError, match=r".*") as info:
        NemoChatFormat().parse(record, DataConfig())
    assert reason in str(info.value)
