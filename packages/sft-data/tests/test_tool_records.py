"""Tool definitions, tool calls, tool results and reasoning in ``messages`` / ShareGPT records: kept
for the template as given, and every malformed one a located record error."""

from __future__ import annotations

import json

import pytest
from sft_data.config import DataConfig
from sft_data.errors import RecordError, SftError
from sft_data.formats.messages import MessagesFormat, ShareGPTFormat
from sft_data.templates.jinja_messages import message_dicts

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
CALL = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}


def messages(*extra):
    return [{"role": "user", "content": "Paris?"}, *extra]


def test_tool_fields_reach_the_template_as_given():
    record = {"tools": [WEATHER], "messages": messages(
        {"role": "assistant", "content": None, "tool_calls": [CALL], "reasoning_content": "Look it up."},
        {"role": "tool", "tool_call_id": "c1", "name": "get_weather", "content": "21"},
        {"role": "assistant", "content": "21 degrees."})}
    conversation = MessagesFormat().parse(record, DataConfig())
    assert conversation.tools == (WEATHER,)
    dicts, trainable = message_dicts(conversation)
    assert dicts == [
        {"role": "user", "content": "Paris?"},
        {"role": "assistant", "content": "", "reasoning_content": "Look it up.", "tool_calls": [CALL]},
        {"role": "tool", "content": "21", "tool_call_id": "c1", "name": "get_weather"},
        {"role": "assistant", "content": "21 degrees."},
    ]
    assert trainable == [False, True, False, True]


def test_tools_as_a_json_string_and_from_the_setting():
    as_text = MessagesFormat().parse({"tools": json.dumps([WEATHER]), "messages": messages(
        {"role": "assistant", "content": "ok"})}, DataConfig())
    from_setting = MessagesFormat().parse({"messages": messages({"role": "assistant", "content": "ok"})},
                                          DataConfig(tools=json.dumps([WEATHER])))
    assert as_text.tools == from_setting.tools == (WEATHER,)
    sharegpt = ShareGPTFormat().parse({"tools": json.dumps([WEATHER]), "conversations": [
        {"from": "human", "value": "Paris?"}, {"from": "function_call", "value": json.dumps(CALL["function"])},
        {"from": "observation", "value": "21"}, {"from": "gpt", "value": "21 degrees."}]}, DataConfig())
    assert sharegpt.tools == (WEATHER,) and [t.role for t in sharegpt.turns] == ["user", "assistant", "tool",
                                                                                  "assistant"]


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"messages": messages({"role": "assistant", "tool_calls": {"name": "x"}})},
         "field messages[1].'tool_calls' must be a list, got object"),
        ({"messages": messages({"role": "assistant", "tool_calls": [{"function": {"arguments": "{}"}}]})},
         "messages[1].tool_calls[0] has no function name (a non-empty string)"),
        ({"messages": messages({"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": 3}}]})},
         "messages[1].tool_calls[0].arguments must be a JSON string or an object, got number"),
        ({"messages": messages({"role": "assistant", "tool_calls": ["f"]})},
         "messages[1].tool_calls[0] must be an object, got string"),
        ({"messages": [{"role": "user", "content": "a", "reasoning_content": "b"},
                       {"role": "assistant", "content": "c"}]},
         "messages[0].'reasoning_content': only assistant messages carry reasoning_content"),
        ({"messages": messages({"role": "assistant", "content": "a", "reasoning_content": 5})},
         "field messages[1].'reasoning_content' must be a string or null, got number"),
        ({"messages": messages({"role": "tool", "content": "r", "tool_call_id": 7}), },
         "field messages[1].'tool_call_id' must be a string or null, got number"),
        ({"tools": {"a": 1}, "messages": messages({"role": "assistant", "content": "a"})},
         "field 'tools' must be a list of tool objects, got object"),
        ({"tools": "[oops", "messages": messages({"role": "assistant", "content": "a"})},
         "field 'tools' is a string but not JSON"),
        ({"tools": [1], "messages": messages({"role": "assistant", "content": "a"})},
         "tools[0] must be an object, got number"),
        ({"messages": messages({"role": "assistant", "content": None})},
         "field messages[1].'content' must be a string, got null"),
    ],
)
def test_malformed_tool_records_are_errors(record, reason):
    with pytest.raises(RecordError) as error:
        MessagesFormat().parse(record, DataConfig())
    assert str(error.value).startswith(reason)


@pytest.mark.parametrize(("value", "reason"), [
    ("[1, 2]", "tools: expected a JSON list of tool objects"),
    ("[nope", "tools: the value is not valid JSON"),
    ("missing-tools.json", "tools: cannot read missing-tools.json (No such file or directory)"),
])
def test_a_bad_tools_setting_is_one_line(value, reason):
    with pytest.raises(SftError) as error:
        DataConfig(tools=value)
    assert str(error.value).startswith(reason) and "\n" not in str(error.value)
