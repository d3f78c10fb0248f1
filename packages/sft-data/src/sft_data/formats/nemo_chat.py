"""NeMo chat records: ``{"system", "mask", "type"?, "conversations": [{"from", "value", "label"?}]}``."""

from __future__ import annotations

from typing import Any

from sft_data.config import DataConfig
from sft_data.errors import RecordError
from sft_data.formats.base import optional_str, require_list, require_object, require_str
from sft_data.types import Conversation, Turn

NEMO_TYPES = (None, "VALUE_TO_TEXT", "TEXT_TO_VALUE")


class NemoChatFormat:
    name = "nemo-chat"
    description = "NeMo chat: system, mask, type, conversations of {from, value, label}"

    def detect(self, record: dict[str, Any]) -> bool:
        turns = record.get("conversations")
        if not isinstance(turns, list):
            return False
        if "mask" in record or "type" in record:
            return True
        speakers = {t.get("from") for t in turns if isinstance(t, dict)}
        return bool(speakers) and not speakers <= SHAREGPT_SPEAKERS

    def parse(self, record: dict[str, Any], config: DataConfig) -> Conversation:
        turns_raw = require_list(record, "conversations")
        system = optional_str(record, "system") or ""
        mask = record.get("mask", "User")
        if not isinstance(mask, str):
            raise RecordError(f"field 'mask' must be a string (comma-separated speakers), got {type(mask).__name__}")
        masked = tuple(s.strip() for s in mask.split(",") if s.strip())
        nemo_type = record.get("type")
        if nemo_type not in NEMO_TYPES:
            raise RecordError(f"field 'type' must be VALUE_TO_TEXT, TEXT_TO_VALUE or null, got {nemo_type!r}")
        turns = []
        for i, raw in enumerate(turns_raw):
            where = f"conversations[{i}]."
            turn = require_object(raw, f"conversations[{i}]")
            speaker = require_str(turn, "from", where)
            value = require_str(turn, "value", where)
            label = optional_str(turn, "label", where)
            role = "user" if speaker in masked else "assistant"
            turns.append(Turn(role=role, content=value, speaker=speaker, label=label))
        # Exact speaker comparison: the reference's substring test counted "Use" as masked under "User".
        if all(t.speaker in masked for t in turns):
            raise RecordError(f"no assistant turn: every speaker is masked ({', '.join(masked)})")
        return Conversation(tuple(turns), system=system, nemo_type=nemo_type, masked_speakers=masked)


SHAREGPT_SPEAKERS = {"human", "gpt", "system", "user", "assistant", "tool", "function_call", "observation"}
