"""The chat-template contract and NeMo's chat prompt tokens."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol

from sft_data.errors import SftError
from sft_data.tokenizers.base import Tokenizer
from sft_data.types import Conversation, Segment


@dataclass(frozen=True)
class ChatPromptTokens:
    """NeMo's ``chat_prompt_tokens`` (the dataset's defaults)."""

    system_turn_start: str = "<extra_id_0>"
    """Starts the system header."""
    turn_start: str = "<extra_id_1>"
    """Starts every turn; the trailing one after an assistant turn is trained (it ends the turn)."""
    label_start: str = "<extra_id_2>"
    """Starts a turn's label (VALUE_TO_TEXT / TEXT_TO_VALUE)."""
    end_of_turn: str = "\n"
    """Ends every turn's value."""
    end_of_name: str = "\n"
    """Ends a speaker's name and a label."""

    @classmethod
    def from_dict(cls, values: dict | None) -> ChatPromptTokens:
        values = dict(values or {})
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise SftError(f"unknown chat_prompt_tokens key(s): {', '.join(sorted(unknown))}")
        for key, value in values.items():
            if not isinstance(value, str):
                raise SftError(f"chat_prompt_tokens.{key} must be a string, got {value!r}")
        return cls(**values)

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


class ChatTemplate(Protocol):
    """Registered through ``sft_register_chat_templates``."""

    name: str

    def render(
        self, conversation: Conversation, tokenizer: Tokenizer, *, add_generation_prompt: bool = False
    ) -> list[Segment]:
        """The conversation as segments; trained segments are what the loss sees.

        With ``add_generation_prompt`` the last turn is left open for the assistant to answer
        (used by generation; no trailing end-of-turn is trained then).
        """
        ...
