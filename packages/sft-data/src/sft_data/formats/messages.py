"""OpenAI ``messages``, ShareGPT ``conversations`` and Alpaca records, all converted to a Conversation."""

from __future__ import annotations

from typing import Any

from sft_data.config import DataConfig
from sft_data.errors import RecordError
from sft_data.formats.base import optional_str, require_list, require_object, require_str
from sft_data.formats.tools import record_tools, tool_message_fields
from sft_data.records import json_type
from sft_data.types import Conversation, Turn

ROLES = ("system", "user", "assistant", "tool")
SHAREGPT_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "tool": "tool",
    "function_call": "assistant",
    "observation": "tool",
}


def build_conversation(turns: list[Turn], tools: tuple[dict[str, Any], ...] | None = None) -> Conversation:
    """Leading system turn becomes ``system``; at least one trained assistant turn is required."""
    system = None
    if turns and turns[0].role == "system":
        system, turns = turns[0].content, turns[1:]
    if not turns:
        raise RecordError("empty conversation: no turns besides the system prompt")
    if not any(t.role == "assistant" and t.trained is not False for t in turns):
        raise RecordError("no assistant turn to train on")
    return Conversation(tuple(turns), system=system, tools=tools)


def message_content(message: dict[str, Any], where: str) -> str:
    content = message.get("content")
    if content is None and message.get("tool_calls"):
        return ""  # an assistant turn that only calls tools (OpenAI writes content: null)
    if isinstance(content, str):
        return content
    # OpenAI's content parts: only text parts can be trained on here.
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            part = require_object(part, f"{where}content[{j}]")
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise RecordError(f"{where}content[{j}] is not a text part")
            texts.append(part["text"])
        return "".join(texts)
    if content is None and "content" in message:
        raise RecordError(f"field {where}'content' must be a string, got null")
    return require_str(message, "content", where)


class MessagesFormat:
    name = "messages"
    description = ('OpenAI chat: {"messages": [{"role", "content", "weight"?, "tool_calls"?, "reasoning_content"?, '
                   '"tool_call_id"?}], "tools"?}')

    def detect(self, record: dict[str, Any]) -> bool:
        return isinstance(record.get("messages"), list)

    def parse(self, record: dict[str, Any], config: DataConfig) -> Conversation:
        turns = []
        for i, raw in enumerate(require_list(record, "messages")):
            where = f"messages[{i}]."
            message = require_object(raw, f"messages[{i}]")
            role = require_str(message, "role", where)
            if role not in ROLES:
                raise RecordError(f"unknown role {role!r} in messages[{i}] (expected one of {', '.join(ROLES)})")
            trained = None
            if "weight" in message:  # OpenAI's per-message weight: 0 excludes an assistant turn
                weight = message["weight"]
                if weight not in (0, 1):
                    raise RecordError(f"{where}'weight' must be 0 or 1, got {json_type(weight)} {weight!r}")
                trained = bool(weight)
            turns.append(Turn(role=role, content=message_content(message, where), trained=trained,
                              **tool_message_fields(message, role, where)))
        return build_conversation(turns, record_tools(record, config))


class ShareGPTFormat:
    name = "sharegpt"
    description = 'ShareGPT: {"conversations": [{"from": "human"|"gpt"|"system", "value"}]}'

    def detect(self, record: dict[str, Any]) -> bool:
        turns = record.get("conversations")
        if not isinstance(turns, list) or "mask" in record:
            return False
        speakers = {t.get("from") for t in turns if isinstance(t, dict)}
        return bool(speakers) and speakers <= set(SHAREGPT_ROLES)

    def parse(self, record: dict[str, Any], config: DataConfig) -> Conversation:
        turns = []
        system = optional_str(record, "system")
        if system:
            turns.append(Turn(role="system", content=system))
        for i, raw in enumerate(require_list(record, "conversations")):
            where = f"conversations[{i}]."
            turn = require_object(raw, f"conversations[{i}]")
            speaker = require_str(turn, "from", where)
            if speaker not in SHAREGPT_ROLES:
                raise RecordError(
                    f"unknown role {speaker!r} in conversations[{i}] (expected human, gpt or system)"
                )
            turns.append(Turn(role=SHAREGPT_ROLES[speaker], content=require_str(turn, "value", where)))
        return build_conversation(turns, record_tools(record, config))


class AlpacaFormat:
    name = "alpaca"
    description = "Alpaca: instruction, input (optional), output, as one user turn and one assistant turn"

    def detect(self, record: dict[str, Any]) -> bool:
        return "instruction" in record and "output" in record

    def parse(self, record: dict[str, Any], config: DataConfig) -> Conversation:
        instruction = require_str(record, "instruction")
        extra = optional_str(record, "input") or ""
        output = require_str(record, "output")
        prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
        turns = [Turn(role="user", content=prompt), Turn(role="assistant", content=output)]
        system = optional_str(record, "system")
        if system:
            turns.insert(0, Turn(role="system", content=system))
        return build_conversation(turns)
