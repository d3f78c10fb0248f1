"""Whether a rendered conversation still holds everything its record gave: nothing dropped silently.

A chat template renders only what it knows: ChatML without tool support drops ``tool_calls`` and
``reasoning_content`` without a word and leaves an empty assistant turn to train on. So after
rendering, every part is looked for in the text: each message's content (with ``<think>`` reasoning
in it taken apart from the answer), each tool call's function name and arguments, the reasoning,
and each tool's name. Templates may trim a part or write it as a JSON string, so a part counts as
present trimmed, or JSON-escaped; arguments given as an object also count when every key and value
appears (templates write them as JSON, as XML parameters, ...).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from sft_data.templates.markers import THINK_CLOSE, split_think
from sft_data.types import Conversation


def lost_parts(conversation: Conversation, text: str) -> list[str]:
    """What of ``conversation`` is missing from ``text``, each named as ``messages[i].field``."""
    return [name for name, present in _parts(conversation) if not present(text)]


def _parts(conversation: Conversation) -> Iterator[tuple[str, Any]]:
    offset = 0
    if conversation.system:
        yield "messages[0].content (system)", _contains(conversation.system)
        offset = 1
    for i, turn in enumerate(conversation.turns, start=offset):
        where = f"messages[{i}]"
        content = turn.content
        if turn.role == "assistant" and THINK_CLOSE in content:
            before, reasoning, content = split_think(content)
            yield f"{where}.content before <think>", _contains(before)
            yield f"{where}.content <think> reasoning", _contains(reasoning)
        yield f"{where}.content ({turn.role})", _contains(content)
        if turn.reasoning:
            yield f"{where}.reasoning_content", _contains(turn.reasoning)
        for j, call in enumerate(turn.tool_calls or ()):
            function = call.get("function", call)
            yield f"{where}.tool_calls[{j}] name {function['name']!r}", _contains(function["name"])
            if function.get("arguments"):
                yield f"{where}.tool_calls[{j}] ({function['name']}) arguments", _arguments(function["arguments"])
    for k, tool in enumerate(conversation.tools or ()):
        function = tool.get("function", tool)
        name = function.get("name") if isinstance(function, dict) else None
        if isinstance(name, str) and name:
            yield f"tools[{k}] ({name})", _contains(name)


def _forms(value: str) -> tuple[str, ...]:
    core = value.strip()
    escaped = json.dumps(core, ensure_ascii=False)[1:-1]
    return (core,) if escaped == core else (core, escaped)


def _contains(value: str):
    def present(text: str) -> bool:
        core = value.strip()  # the JSON-escaped form is only worked out when the plain one is missing
        return not core or core in text or any(form in text for form in _forms(core)[1:])

    return present


def _arguments(arguments: str | dict):
    whole: list[str] = []
    parsed: Any = arguments
    if isinstance(arguments, str):
        whole.extend(_forms(arguments))
        try:
            parsed = json.loads(arguments)
        except ValueError:
            parsed = None
    if isinstance(parsed, dict):
        whole += [json.dumps(parsed, ensure_ascii=False), json.dumps(parsed, ensure_ascii=False, separators=(",", ":"))]
        leaves = list(_leaves(parsed))
    else:
        leaves = []

    def present(text: str) -> bool:
        if any(form in text for form in whole):
            return True
        return bool(leaves) and all(any(form in text for form in forms) for forms in leaves)

    return present


def _leaves(value: Any) -> Iterator[tuple[str, ...]]:
    """The text forms each key and scalar value of ``value`` may be written in."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield _forms(str(key))
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    elif isinstance(value, str):
        if value.strip():
            yield _forms(value)
    else:
        yield (json.dumps(value), str(value))
