"""Format parsing and ``--format auto`` detection for the built-in formats."""

from __future__ import annotations

import pytest
from sft_data.config import DataConfig
from sft_data.errors import RecordError, SftError
from sft_data.formats.detect import detect_format
from sft_data.registries import DataRegistries
from sft_data.types import Conversation, PromptResponse, Turn


@pytest.fixture(scope="module")
def formats():
    return DataRegistries.from_plugin_manager().formats


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"system": "", "mask": "User", "conversations": [{"from": "User", "value": "a"}]}, "nemo-chat"),
        ({"conversations": [{"from": "User", "value": "a"}, {"from": "Assistant", "value": "b"}]}, "nemo-chat"),
        ({"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]}, "sharegpt"),
        ({"system": "s", "conversations": [{"from": "human", "value": "a"}]}, "sharegpt"),
        ({"messages": [{"role": "user", "content": "a"}]}, "messages"),
        ({"instruction": "do", "input": "", "output": "done"}, "alpaca"),
        ({"input": "q", "output": "a"}, "prompt-response"),
    ],
)
def test_auto_detection(formats, record, expected):
    assert detect_format(record, formats, "f.jsonl:1").name == expected


def test_undetectable_record_names_location_and_formats(formats):
    with pytest.raises(SftError, match=r"f.jsonl:1: cannot detect the record format \(fields: question\)"):
        detect_format({"question": "?"}, formats, "f.jsonl:1")


def test_messages_to_conversation(formats):
    record = {"messages": [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": [{"type": "text", "text": "he"}, {"type": "text", "text": "llo"}]},
        {"role": "assistant", "content": "hi", "weight": 0},
        {"role": "user", "content": "again"},
        {"role": "assistant", "content": "bye"},
    ]}
    conv = formats.get("messages").parse(record, DataConfig())
    assert conv == Conversation(
        (Turn("user", "hello"), Turn("assistant", "hi", trained=False), Turn("user", "again"), Turn("assistant", "bye")),
        system="sys",
    )


def test_sharegpt_and_alpaca_to_conversation(formats):
    share = formats.get("sharegpt").parse(
        {"conversations": [{"from": "system", "value": "s"}, {"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},
        DataConfig())
    assert share == Conversation((Turn("user", "q"), Turn("assistant", "a")), system="s")
    alpaca = formats.get("alpaca").parse({"instruction": "Add", "input": "1 2", "output": "3"}, DataConfig())
    assert alpaca == Conversation((Turn("user", "Add\n\n1 2"), Turn("assistant", "3")))


def test_prompt_response_reads_template_fields(formats):
    cfg = DataConfig(prompt_template="{context} {question} {answer}", label_key="answer")
    parsed = formats.get("prompt-response").parse({"context": " c ", "question": "q", "answer": "a", "x": 1}, cfg)
    assert parsed == PromptResponse({"context": "c", "question": "q", "answer": "a"})


@pytest.mark.parametrize(
    ("name", "record", "reason"),
    [
        ("messages", {"messages": []}, "empty conversation"),
        ("messages", {"messages": "hi"}, "field 'messages' must be a list, got string"),
        ("messages", {"messages": [{"role": "robot", "content": "a"}]}, "unknown role 'robot'"),
        ("messages", {"messages": [{"role": "user", "content": "a"}]}, "no assistant turn"),
        ("messages", {"messages": [{"role": "user"}]}, "missing field messages[0].'content'"),
        ("messages", {"messages": [{"role": "assistant", "content": 1}]}, "must be a string, got number"),
        ("messages", {"messages": [{"role": "system", "content": "s"}]}, "no turns besides the system prompt"),
        ("sharegpt", {"conversations": [{"from": "alien", "value": "a"}]}, "unknown role 'alien'"),
        ("sharegpt", {"conversations": [{"from": "human", "value": "a"}]}, "no assistant turn"),
        ("alpaca", {"instruction": "a"}, "missing field 'output'"),
        ("alpaca", {"instruction": "a", "output": None}, "must be a string, got null"),
    ],
)
def test_invalid_records_say_why(formats, name, record, reason):
    with pytest.raises(RecordError) as info:
        formats.get(name).parse(record, DataConfig())
    assert reason in str(info.value)
