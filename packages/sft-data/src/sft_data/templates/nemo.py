"""NeMo's chat template (``chat_prompt_tokens``) with the reference's turn masking.

Rendering: ``{system_turn_start}System{end_of_name}{system}{end_of_turn}``, then per turn
``{turn_start}{speaker}{end_of_name}`` + value + ``{end_of_turn}``, the label
``{label_start}{label}{end_of_name}`` before the value (VALUE_TO_TEXT) or after it
(TEXT_TO_VALUE), and a trailing ``{turn_start}`` when the last speaker is not masked.

Masking (as NeMo's ``_mask_targets``): header untrained; turn 0 untrained (unless TEXT_TO_VALUE);
a masked speaker's turn untrained except, after turn 1, its leading ``turn_start`` (it ends the
previous assistant turn); other turns train everything after the name (and after the label for
VALUE_TO_TEXT; only the label for TEXT_TO_VALUE); the trailing ``turn_start`` is trained.

A chat prompt token the tokenizer drops (a SentencePiece normalizer that removes ``\n`` or ``\x11``)
is reported once (``check_tokenizer``) and training goes on as the reference's does, except for
the turn starts: without them nothing separates the turns, so that is refused.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from sft_data.errors import ConfigError
from sft_data.templates.base import ChatPromptTokens
from sft_data.tokenizers.base import Tokenizer
from sft_data.types import Conversation, Segment, Turn

SYSTEM_NAME = "System"
TURN_STARTS = ("system_turn_start", "turn_start")
# What a dropped token takes away (the masks come from character offsets and stay right).
LOSSES = {
    "end_of_turn": "nothing marks where a turn's text ends",
    "end_of_name": "nothing separates a name or label from the text after it; "
                   "the reference's VALUE_TO_TEXT label masks needed it",
    "label_start": "nothing marks where a label starts",
}
_warned: set[str] = set()


@dataclass(frozen=True)
class NemoChatTemplate:
    tokens: ChatPromptTokens = field(default_factory=ChatPromptTokens)
    name: str = "nemo"
    description: str = "NeMo chat_prompt_tokens template (NeMo-Aligner SFT compatible masks)"

    def with_tokens(self, tokens: ChatPromptTokens) -> NemoChatTemplate:
        return NemoChatTemplate(tokens, self.name, self.description)

    def check_tokenizer(self, tokenizer: Tokenizer) -> str | None:
        """Refuse turn starts ``tokenizer`` drops; return (and print once) a warning for other dropped tokens."""
        dropped: dict[str, list[str]] = {}
        for key, value in self.tokens.to_dict().items():
            if value and not _survives(value, tokenizer):
                if key in TURN_STARTS:
                    raise ConfigError(
                        f"chat_prompt_tokens.{key} {value!r} does not survive tokenization by {tokenizer!r}, so "
                        "nothing would separate the turns; pick a turn start this tokenizer keeps"
                    )
                dropped.setdefault(value, []).append(key)
        if not dropped:
            return None
        lines = [
            f"{'/'.join(keys)} {value!r} ({'; '.join(LOSSES[k] for k in keys)})" for value, keys in dropped.items()
        ]
        message = (
            f"warning: {tokenizer!r} drops chat_prompt_tokens {', '.join(lines)}; training goes on as the "
            "reference's does (masks come from character offsets and stay in place)"
        )
        if message not in _warned:
            _warned.add(message)
            print(message, file=sys.stderr)
        return message

    def render(
        self, conversation: Conversation, tokenizer: Tokenizer | None = None, *, add_generation_prompt: bool = False
    ) -> list[Segment]:
        t = self.tokens
        out = [
            Segment(t.system_turn_start, special=True, role="system"),
            Segment(SYSTEM_NAME, role="system"),
            Segment(t.end_of_name, special=True, role="system"),
            Segment(conversation.system or "", role="system"),
            Segment(t.end_of_turn, special=True, role="system"),
        ]
        masked = conversation.masked_speakers
        for i, turn in enumerate(conversation.turns):
            out.extend(self._turn(i, turn, conversation.nemo_type, masked))
        last = conversation.turns[-1]
        if add_generation_prompt:
            speaker = next((x.speaker for x in conversation.turns if x.speaker not in masked), "Assistant")
            out += [Segment(t.turn_start, special=True, role="assistant"),
                    Segment(speaker or "Assistant", role="assistant"),
                    Segment(t.end_of_name, special=True, role="assistant")]
        elif last.speaker not in masked:
            out.append(Segment(t.turn_start, trained=True, special=True, role=last.speaker))
        return out

    def _turn(self, i: int, turn: Turn, nemo_type: str | None, masked: tuple[str, ...]) -> list[Segment]:
        t = self.tokens
        speaker = turn.speaker or turn.role
        # (text, special, trained when the speaker is not masked)
        name = [(t.turn_start, True, False), (speaker, False, False), (t.end_of_name, True, False)]
        value = [(turn.content, False, True), (t.end_of_turn, True, True)]
        if turn.label is None:
            parts = name + value
        elif nemo_type == "VALUE_TO_TEXT":  # the label conditions the answer: untrained context
            parts = name + [(t.label_start, True, False), (turn.label, False, False), (t.end_of_name, True, False)]
            parts += value
        elif nemo_type == "TEXT_TO_VALUE":  # the answer conditions the label: only the label trains
            parts = name + [(text, special, False) for text, special, _ in value]
            parts += [(t.label_start, True, False), (turn.label, False, True), (t.end_of_name, True, True)]
        else:
            parts = name + value

        if i == 0 and nemo_type != "TEXT_TO_VALUE":
            flags = [False] * len(parts)  # the first turn is always context
        elif speaker in masked:
            # From turn 2 on (turn 1 for TEXT_TO_VALUE) a masked turn's turn_start is trained:
            # it is what ends the previous assistant turn.
            keeps_start = i > 1 or (i == 1 and nemo_type == "TEXT_TO_VALUE")
            flags = [keeps_start and j == 0 for j in range(len(parts))]
        else:
            flags = [trained for _, _, trained in parts]
        return [
            Segment(text, trained=flag, special=special, role=speaker)
            for (text, special, _), flag in zip(parts, flags, strict=True)
        ]


def _survives(token: str, tokenizer: Tokenizer) -> bool:
    """One vocabulary entry, or text that comes back out of decoding when it stands between two letters."""
    if tokenizer.token_to_id(token) is not None:
        return True
    return token in tokenizer.decode(tokenizer.encode(f"a{token}a"))
