"""``sft preview`` shows tool calls, tool results and reasoning apart, and says which are trained."""

from __future__ import annotations

import json
import re

import pytest

TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message.role == 'user' %}{{- '<|im_start|>user\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- elif message.role == 'assistant' %}{{- '<|im_start|>assistant\\n' }}{%- generation %}"
    "{%- if message.reasoning_content %}{{- '<think>\\n' + message.reasoning_content + '\\n</think>\\n\\n' }}{%- endif %}"
    "{{- message.content }}"
    "{%- for call in message.tool_calls %}"
    "{{- '<tool_call>' + call.function.name + ' ' + call.function.arguments | tojson + '</tool_call>' }}"
    "{%- endfor %}{{- '<|im_end|>' }}{%- endgeneration %}{{- '\\n' }}"
    "{%- elif message.role == 'tool' %}"
    "{{- '<|im_start|>user\\n<tool_response>' + message.content + '</tool_response><|im_end|>\\n' }}"
    "{%- endif %}{%- endfor %}"
)
RECORD = {"messages": [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "reasoning_content": "I should look it up.",
     "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
    {"role": "tool", "content": "sunny, 21 degrees"},
    {"role": "assistant", "content": "It is sunny."}]}


@pytest.fixture
def files(tmp_path):
    (tmp_path / "t.jinja").write_text(TEMPLATE)
    (tmp_path / "d.jsonl").write_text(json.dumps(RECORD) + "\n")
    return tmp_path


def test_plain_preview_marks_each_kind_and_says_which_are_trained(run, tok_model, files):
    result = run("preview", files / "d.jsonl", "--tokenizer", tok_model, "--chat-template", files / "t.jinja",
                 "--plain")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "legend: ⟦trained⟧  ⟪tool calls⟫  ⦅tool results⦆  ⦃reasoning⦄"
    assert re.search(r" · \d+ tokens, \d+ trained · tool calls \d+ \(trained\) · tool results \d+ \(not trained\)"
                     r" · reasoning \d+ \(trained\)$", lines[1])
    body = "\n".join(lines[2:])
    assert "⟦⦃<think>\nI should look it up.\n</think>\n\n⦄⟧" in body
    assert '⟦⟪<tool_call>get_weather {"city": "Paris"}</tool_call>⟫⟧' in body
    assert "<tool_response>⦅sunny, 21 degrees⦆</tool_response>" in body
    assert "⟦It is sunny.<|im_end|>⟧" in body


def test_reasoning_shown_untrained_when_train_reasoning_is_off(run, tok_model, files):
    result = run("preview", files / "d.jsonl", "--tokenizer", tok_model, "--chat-template", files / "t.jinja",
                 "--plain", "train_reasoning=false")
    assert result.exit_code == 0, result.output
    assert re.search(r" · reasoning \d+ \(not trained\)\n", result.output)
    assert "\n⦃<think>\nI should look it up.\n</think>\n\n⦄⟦⟪<tool_call>" in result.output


def test_colour_preview_has_a_legend(run, tok_model, files):
    result = run("preview", files / "d.jsonl", "--tokenizer", tok_model, "--chat-template", files / "t.jinja")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("legend: bold = trained, dim = not trained; cyan = tool calls, "
                                    "magenta = tool results, yellow = reasoning\n")
