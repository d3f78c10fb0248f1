"""From a prompt (text or a training-format record) to the token ids the fine-tuned model expects.

The template is the one stored in the ``.nemo`` by ``sft train`` (``config.data``): the users of
the reference had to copy it out of model_config.yaml by hand. A prompt-response model gets its
``prompt_template`` filled with the label left empty; a chat model gets its chat template (NeMo
``chat_prompt_tokens`` or Jinja) rendered with the assistant header (``add_generation_prompt``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sft_data.config import DataConfig
from sft_data.encoding import ChatEncoder
from sft_data.errors import RecordError, SftError
from sft_data.formats.detect import detect_format
from sft_data.formats.prompt_response import template_fields
from sft_data.registries import DataRegistries
from sft_data.samples import SampleBuilder
from sft_data.templates.prompt_response import PromptResponseTokenizer
from sft_data.tokenizers.base import Tokenizer
from sft_data.types import Conversation, PromptResponse, Turn

# Placeholder last turns for chat records that end with the user (the formats require an assistant
# turn to train on): appended to parse the record, then dropped before rendering.
_OPEN_TURNS = {"messages": {"role": "assistant", "content": ""},
               "conversations": {"from": "gpt", "value": ""}}


@dataclass
class Prompt:
    ids: list[int]
    reference: str | None = None
    """The record's answer (label field or last assistant turn), for exact-match scoring."""


def stored_data_config(data: dict[str, Any]) -> DataConfig:
    """The prompt settings that ``sft train`` stored in the .nemo (``config.data``)."""
    ds = data.get("validation_ds") or data.get("train_ds") or {}
    return DataConfig(
        prompt_template=ds.get("prompt_template") or "{input} {output}", label_key=ds.get("label_key") or "output",
        add_bos=bool(ds.get("add_bos", False)), add_sep=bool(ds.get("add_sep", False)), add_eos=False,
        max_seq_length=1 << 30, answer_only_loss=True, chat_template=data.get("chat_template"),
        chat_prompt_tokens=dict(data.get("chat_prompt_tokens") or {}),
    )


class PromptBuilder:
    """Turns prompts into ids with one model's stored template; also knows when a reply ends."""

    def __init__(self, data: dict[str, Any], tokenizer: Tokenizer, registries: DataRegistries):
        self.config = stored_data_config(data)
        self.chat = bool(data.get("chat")) or data.get("chat_template") is not None
        self.tokenizer = tokenizer
        self.registries = registries
        self._formats: dict[str, SampleBuilder] = {}
        self._encoder = ChatEncoder(tokenizer)

    def _builder(self, fmt) -> SampleBuilder:
        if fmt.name not in self._formats:
            self._formats[fmt.name] = SampleBuilder(self.config, self.tokenizer, fmt, self.registries)
        return self._formats[fmt.name]

    @property
    def _chat_builder(self) -> SampleBuilder:
        name = "nemo-chat" if self.config.chat_template in (None, "nemo") else "messages"
        return self._builder(self.registries.formats.get(name))

    def from_text(self, text: str) -> Prompt:
        """One user message: the first placeholder of a prompt template, or a user turn of a chat."""
        if self.chat:
            return self.from_turns([Turn("user", text, speaker="User")])
        keys = [k for k in template_fields(self.config.prompt_template) if k != self.config.label_key]
        fields = dict.fromkeys(keys, "")
        if keys:
            fields[keys[0]] = text
        return Prompt(self._prompt_response(fields))

    def from_turns(self, turns: Sequence[Turn], system: str | None = None) -> Prompt:
        """A conversation so far (``sft generate --chat``), ending with the user's turn."""
        return Prompt(self._render(Conversation(tuple(turns), system)))

    def from_record(self, record: dict[str, Any], location: str) -> Prompt:
        """A record in any training format; its answer (if present) becomes the reference."""
        fmt = detect_format(record, self.registries.formats, location)
        builder = self._builder(fmt)
        try:
            parsed = builder.parse(record)
        except RecordError:
            key = next((k for k in _OPEN_TURNS if isinstance(record.get(k), list)), None)
            if key is None:
                raise
            parsed = builder.parse({**record, key: [*record[key], _OPEN_TURNS[key]]})
        if isinstance(parsed, PromptResponse):
            label = self.config.label_key
            fields = {k: v for k, v in parsed.fields.items() if k != label}
            return Prompt(self._prompt_response(fields), record.get(label))
        turns = parsed.turns
        reference = None
        if turns[-1].role == "assistant":  # the answer to score against (empty: our placeholder)
            reference = turns[-1].content or None
            turns = turns[:-1]
        if not turns:
            raise RecordError("nothing to answer: the conversation has no turn before the assistant's")
        conversation = Conversation(turns, parsed.system, parsed.nemo_type, parsed.masked_speakers)
        return Prompt(self._render(conversation, builder), reference)

    def _prompt_response(self, fields: dict[str, str]) -> list[int]:
        tokenize = PromptResponseTokenizer(self.config, self.tokenizer)
        return tokenize(PromptResponse({**fields, self.config.label_key: ""})).input_ids

    def _render(self, conversation: Conversation, builder: SampleBuilder | None = None) -> list[int]:
        # open-ended: the prompt's last text run is encoded as the start of the answer's turn, as in
        # training (SentencePiece's legacy rule trims it only when something follows)
        rendered = (builder or self._chat_builder).render(conversation, add_generation_prompt=True)
        return self._encoder.encode_many([rendered])[0].input_ids

    def stop_markers(self) -> tuple[list[int], list[str]]:
        """Token ids and strings that end a reply: EOS, and for chat models the trained control
        strings that close an assistant turn (NeMo's end_of_turn, ``<|im_end|>``, ``<|eot_id|>``...)."""
        ids = [] if self.tokenizer.eos_id is None else [self.tokenizer.eos_id]
        strings: list[str] = []
        if self.chat:
            sample = Conversation((Turn("user", "a", speaker="User"), Turn("assistant", "b", speaker="Assistant")))
            for segment in self._chat_builder.chat_template.render(sample, self.tokenizer):
                text = segment.text.strip()
                if segment.trained and segment.special and text:
                    token = self.tokenizer.token_to_id(text)
                    if token is not None:
                        ids.append(token)
                    elif text not in strings:
                        strings.append(text)
        if not ids and not strings:
            raise SftError("the tokenizer has no EOS token and the template no end-of-turn marker; pass --stop")
        return sorted(set(ids)), strings
