"""Tool definitions, assistant tool calls and reasoning in chat records (OpenAI style), checked.

They reach the chat template as transformers passes them: ``tools`` as a template variable, and the
messages keep ``tool_calls``, ``tool_call_id``, ``name`` and ``reasoning_content`` unchanged. Only
their shape is checked here, so a bad record is one located line instead of a template failure.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from sft_data.config import DataConfig, load_tools
from sft_data.errors import RecordError
from sft_data.formats.base import optional_str, require_object
from sft_data.records import json_type


def parse_tools(value: Any, where: str = "tools") -> tuple[dict[str, Any], ...] | None:
    """A record's ``tools``: a list of objects, or that list as a JSON string (as Parquet files keep it)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise RecordError(f"field {where!r} is a string but not JSON ({exc})") from None
    if not isinstance(value, list):
        raise RecordError(f"field {where!r} must be a list of tool objects, got {json_type(value)}")
    return tuple(require_object(tool, f"{where}[{i}]") for i, tool in enumerate(value))


@lru_cache(maxsize=8)
def _configured_tools(spec: str) -> tuple[dict[str, Any], ...]:
    return tuple(load_tools(spec))


def record_tools(record: dict[str, Any], config: DataConfig) -> tuple[dict[str, Any], ...] | None:
    """The record's own ``tools``, else the ones ``config.tools`` gives every record."""
    own = parse_tools(record.get("tools"))
    if own is not None or config.tools is None:
        return own
    return _configured_tools(config.tools)


def parse_tool_calls(value: Any, where: str) -> tuple[dict[str, Any], ...] | None:
    """An assistant message's ``tool_calls``: each ``{"function": {"name", "arguments"}}`` (OpenAI) or
    ``{"name", "arguments"}``; ``arguments`` a JSON string or an object."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise RecordError(f"field {where}'tool_calls' must be a list, got {json_type(value)}")
    calls = []
    for j, raw in enumerate(value):
        here = f"{where}tool_calls[{j}]"
        call = require_object(raw, here)
        function = call.get("function", call)
        function = require_object(function, f"{here}.function")
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise RecordError(f"{here} has no function name (a non-empty string)")
        arguments = function.get("arguments")
        if arguments is not None and not isinstance(arguments, str | dict):
            raise RecordError(f"{here}.arguments must be a JSON string or an object, got {json_type(arguments)}")
        calls.append(call)
    return tuple(calls)


def tool_message_fields(message: dict[str, Any], role: str, where: str) -> dict[str, Any]:
    """``Turn`` keyword arguments for the tool-calling and reasoning fields of one message."""
    fields: dict[str, Any] = {}
    tool_calls = parse_tool_calls(message.get("tool_calls"), where)
    reasoning = optional_str(message, "reasoning_content", where)
    if role != "assistant" and (tool_calls is not None or reasoning is not None):
        key = "tool_calls" if tool_calls is not None else "reasoning_content"
        raise RecordError(f"{where}{key!r}: only assistant messages carry {key}")
    if tool_calls:
        fields["tool_calls"] = tool_calls
    if reasoning is not None:
        fields["reasoning"] = reasoning
    for key in ("tool_call_id", "name"):
        value = optional_str(message, key, where)
        if value is not None:
            fields[key] = value
    return fields
