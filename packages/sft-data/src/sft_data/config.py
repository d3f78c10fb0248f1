"""``DataConfig``: how records become training samples (NeMo's ``model.data.*`` keys where they exist)."""

from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sft_data.errors import SftError
from sft_data.templates.base import ChatPromptTokens
from sft_data.text import unescape

TRUNCATION_METHODS = ("left", "right")
OVERLONG_POLICIES = ("truncate", "drop")


@dataclass
class DataConfig:
    format: str = "auto"
    """Record format: ``auto`` (detected from the first record) or a registered format name."""
    prompt_template: str = "{input} {output}"
    """Prompt-response template with ``{field}`` placeholders; backslash escapes such as ``\\n`` are
    interpreted (as the reference does, without garbling non-ASCII). The label placeholder is last."""
    label_key: str = "output"
    """The field holding the answer; trained when ``answer_only_loss``."""
    truncation_field: str = "input"
    """Comma-separated fields shortened first when a prompt-response sample is too long."""
    truncation_method: str = "right"
    """``right`` keeps the start of a field, ``left`` keeps its end."""
    add_bos: bool = False
    """Prompt-response: prepend the tokenizer's BOS."""
    add_eos: bool = True
    """Prompt-response: append EOS after the answer (trained, so the model learns to stop)."""
    add_sep: bool = False
    """Prompt-response: put ``sep_id`` between prompt and answer."""
    sep_id: int | None = None
    """The separator token id used by ``add_sep``."""
    max_seq_length: int = 2048
    """Longest sample in tokens; longer ones are truncated or dropped (``overlong``)."""
    min_seq_length: int = 1
    """Shortest sample in tokens (after truncation): shorter ones are dropped and counted in the stats
    (``dropped_reasons``); 1 keeps every sample. The reference accepted this key and ignored it."""
    overlong: str = "truncate"
    """What to do with an over-long chat sample: ``truncate`` (cut at the end) or ``drop``."""
    answer_only_loss: bool = True
    """Train only on answers / assistant turns; False trains on every token."""
    chat_template: str | None = None
    """Chat template: a registered name, a ``.jinja`` file, a tokenizer_config.json, ``tokenizer``,
    Jinja source, or None (``nemo`` for NeMo chat records; the tokenizer's own template or ``chatml``
    otherwise)."""
    chat_prompt_tokens: ChatPromptTokens = field(default_factory=ChatPromptTokens)
    """NeMo chat control strings."""
    pack_size: int | None = None
    """Pack samples into bins of this many tokens; None keeps one sample per row."""
    packing_algorithm: str = "first_fit_shuffle"
    """A registered packing algorithm."""
    seed: int = 1234
    """Seed for shuffling packing."""
    skip_invalid: bool = False
    """Skip invalid records (counted in stats) instead of failing."""
    tools: str | None = None
    """OpenAI-style tool definitions for every conversation that has no ``tools`` of its own: a JSON
    file holding the list, or the list as JSON text. Passed to the chat template as ``tools``."""
    train_reasoning: bool = True
    """Train on the assistant's reasoning (``reasoning_content``, or ``<think>…</think>`` in its
    content) and the think tags around it; False keeps it as untrained context."""

    def __post_init__(self) -> None:
        if isinstance(self.chat_prompt_tokens, dict):
            self.chat_prompt_tokens = ChatPromptTokens.from_dict(self.chat_prompt_tokens)
        if self.truncation_method not in TRUNCATION_METHODS:
            raise SftError(f"truncation_method must be one of {TRUNCATION_METHODS}, got {self.truncation_method!r}")
        if self.overlong not in OVERLONG_POLICIES:
            raise SftError(f"overlong must be one of {OVERLONG_POLICIES}, got {self.overlong!r}")
        if self.max_seq_length < 2:
            raise SftError(f"max_seq_length must be at least 2, got {self.max_seq_length}")
        if not 1 <= self.min_seq_length <= self.max_seq_length:
            raise SftError(f"min_seq_length must be within 1..max_seq_length ({self.max_seq_length}), "
                           f"got {self.min_seq_length}")
        if self.pack_size is not None and self.pack_size < self.max_seq_length:
            raise SftError(
                f"pack_size ({self.pack_size}) must be at least max_seq_length ({self.max_seq_length})"
            )
        if self.add_sep and self.sep_id is None:
            raise SftError("add_sep needs sep_id (the separator token id)")
        if self.tools is not None:
            load_tools(self.tools)  # a bad file or list is a settings error, whatever the data
        if f"{{{self.label_key}}}" not in self.prompt_template:
            raise SftError(f"prompt_template has no {{{self.label_key}}} placeholder for label_key {self.label_key!r}")

    @property
    def truncation_fields(self) -> list[str]:
        return [f.strip() for f in self.truncation_field.split(",") if f.strip()]

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["chat_prompt_tokens"] = self.chat_prompt_tokens.to_dict()
        return data

    def with_overrides(self, overrides: dict[str, Any]) -> DataConfig:
        """A copy with ``key=value`` overrides applied (``chat_prompt_tokens.turn_start=...`` too)."""
        data = self.to_dict()
        names = list(data)
        for key, value in overrides.items():
            top, _, sub = key.partition(".")
            if top not in data or (sub and top != "chat_prompt_tokens"):
                close = difflib.get_close_matches(top, names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise SftError(f"unknown data setting {key!r}{hint}")
            if sub:
                data[top][sub] = value
            else:
                data[top] = value
        return DataConfig(**data)


def load_tools(spec: str) -> list[dict[str, Any]]:
    """The tool list ``DataConfig.tools`` names: JSON text (``[...]``) or a JSON file holding it."""
    text = spec
    if not spec.lstrip().startswith("["):
        try:
            text = Path(spec).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SftError(f"tools: cannot read {spec} ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        tools = json.loads(text)
    except ValueError as exc:
        raise SftError(f"tools: {spec if text is not spec else 'the value'} is not valid JSON ({exc})") from None
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        raise SftError("tools: expected a JSON list of tool objects ({\"type\": \"function\", \"function\": {...}})")
    return tools


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` with the value read as JSON when it parses (numbers, true/false, null)."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise SftError(f"expected key=value, got {text!r}")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    if isinstance(value, str):
        value = unescape(value)
    return key.strip(), value
