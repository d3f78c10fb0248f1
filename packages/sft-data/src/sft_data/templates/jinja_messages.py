"""What a Jinja chat template is given: ``messages`` and ``tools`` as transformers passes them.

Messages are dicts with ``role`` and ``content``, plus ``tool_calls``, ``tool_call_id``, ``name``
and ``reasoning_content`` where the record has them, unchanged; ``tools`` is a template variable
(None without tools). Before rendering, two things are done to every string in them (keys too):

* special-token strings become one-character placeholders (``jinja_text.Protector``), so text in a
  message, a tool call or a tool schema can never become a control token;
* reasoning (``reasoning_content``, and ``<think>…</think>`` in an assistant's content) and tool
  results are wrapped in sentinels (``markers``), so they can be found in the rendered text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sft_data.templates.jinja_text import Protector, free_characters
from sft_data.templates.markers import Pair, wrap, wrap_think
from sft_data.types import REASONING, TOOL_RESULT, Conversation

GENERATION = "generation"
MARKED = (GENERATION, REASONING, TOOL_RESULT)


@dataclass
class TemplateInput:
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    trainable: list[bool]
    """Per message: may it be trained (an assistant message not excluded by ``weight: 0``)."""
    protector: Protector
    protected: bool
    """Whether any special-token string was replaced (the rendered text then needs restoring)."""
    markers: dict[str, Pair]


def message_dicts(conversation: Conversation) -> tuple[list[dict[str, Any]], list[bool]]:
    """The ``messages`` variable (system first) and, per message, whether it may be trained.

    An empty system prompt is no system message: NeMo chat records carry ``"system": ""`` when they
    have none, and templates would print an empty system turn.
    """
    messages: list[dict[str, Any]] = []
    trainable: list[bool] = []
    if conversation.system:
        messages.append({"role": "system", "content": conversation.system})
        trainable.append(False)
    for turn in conversation.turns:
        message: dict[str, Any] = {"role": turn.role, "content": turn.content}
        if turn.reasoning is not None:
            message["reasoning_content"] = turn.reasoning
        if turn.tool_calls is not None:
            message["tool_calls"] = [dict(call) for call in turn.tool_calls]
        if turn.tool_call_id is not None:
            message["tool_call_id"] = turn.tool_call_id
        if turn.name is not None:
            message["name"] = turn.name
        messages.append(message)
        trainable.append(turn.role == "assistant" and turn.trained is not False)
    return messages, trainable


def template_input(conversation: Conversation, specials: list[str]) -> TemplateInput:
    messages, trainable = message_dicts(conversation)
    tools = [dict(tool) for tool in conversation.tools] if conversation.tools is not None else None
    # Every string at once, for the two scans below (C speed; the strings are in it as they are, or
    # JSON-escaped where they hold quotes, backslashes or control characters).
    try:
        flat = json.dumps([messages, tools], ensure_ascii=False)
    except (TypeError, ValueError):  # values JSON cannot hold (from an Arrow file): walk the strings
        flat = "\0".join(_strings([messages, tools]))
    chars = free_characters([flat], 2 * len(MARKED) + len(specials))
    markers = {name: (chars[2 * i], chars[2 * i + 1]) for i, name in enumerate(MARKED)}
    protector = Protector(specials, chars[2 * len(MARKED):])
    replaced = [0]
    if protector.occurs_in(flat) or any(json.dumps(s, ensure_ascii=False)[1:-1] != s for s in specials):
        messages = _protect(messages, protector, replaced)
        tools = _protect(tools, protector, replaced)
    for message in messages:
        content = message.get("content")
        if message["role"] == "assistant":
            if isinstance(message.get("reasoning_content"), str):
                message["reasoning_content"] = wrap(message["reasoning_content"], markers[REASONING])
            if isinstance(content, str):
                message["content"] = wrap_think(content, markers[REASONING])
        elif message["role"] == "tool" and isinstance(content, str):
            message["content"] = wrap(content, markers[TOOL_RESULT])
    return TemplateInput(messages, tools, trainable, protector, replaced[0] > 0, markers)


def _strings(value: Any):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def _protect(value: Any, protector: Protector, replaced: list[int]) -> Any:
    """``value`` with every string (dict keys too) protected; counts replacements in ``replaced``."""
    if isinstance(value, str):
        new = protector.protect(value)
        replaced[0] += new != value
        return new
    if isinstance(value, dict):
        return {_protect(k, protector, replaced): _protect(v, protector, replaced) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_protect(item, protector, replaced) for item in value]
    return value
