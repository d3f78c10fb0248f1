"""One record in, one training sample out: parse, render, tokenize, truncate, mask.

``SampleBuilder`` holds everything fixed for a run (config, tokenizer, format, template) so each
record costs only its own work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sft_data.config import DataConfig
from sft_data.encoding import SegmentEncoder
from sft_data.errors import RecordError, SftError
from sft_data.registries import DataRegistries
from sft_data.templates.nemo import NemoChatTemplate
from sft_data.templates.prompt_response import PromptResponseTokenizer
from sft_data.tokenizers.base import Tokenizer
from sft_data.types import Conversation, PromptResponse, TokenizedSample


@dataclass
class BuiltSample:
    """The outcome for one record: a sample, or why it was dropped."""

    sample: TokenizedSample
    dropped: str | None = None
    """Why the sample cannot be trained on (e.g. every trained token was truncated away)."""


class SampleBuilder:
    def __init__(self, config: DataConfig, tokenizer: Tokenizer, fmt: Any, registries: DataRegistries):
        self.config = config
        self.tokenizer = tokenizer
        self.format = fmt
        self.registries = registries
        self._encoder = SegmentEncoder(tokenizer)
        self._prompt_response: PromptResponseTokenizer | None = None
        self._template = None

    @property
    def chat_template(self):
        if self._template is None:
            spec = self.config.chat_template
            if spec is None and self.format.name == "nemo-chat":
                spec = "nemo"
            if spec is not None and spec in self.registries.chat_templates:
                template = self.registries.chat_templates.get(spec)
            else:
                from sft_data.templates.resolve import resolve_chat_template

                template = resolve_chat_template(spec, self.tokenizer, self.registries.chat_templates)
            if isinstance(template, NemoChatTemplate):
                template = template.with_tokens(self.config.chat_prompt_tokens)
            self._template = template
        return self._template

    def parse(self, record: dict[str, Any]):
        return self.format.parse(record, self.config)

    def tokenize(self, parsed, source: str = "") -> TokenizedSample:
        """The full sample before length limits (used by previews and generation)."""
        if isinstance(parsed, PromptResponse):
            if self._prompt_response is None:
                self._prompt_response = PromptResponseTokenizer(self.config, self.tokenizer)
            return self._prompt_response(parsed, source)
        if isinstance(parsed, Conversation):
            sample = self._encoder.encode(self.chat_template.render(parsed, self.tokenizer), source)
            if not self.config.answer_only_loss:
                sample.loss_mask = [j > 0 for j in range(len(sample.input_ids))]
            return sample
        raise SftError(f"format {self.format.name!r} returned {type(parsed).__name__}, not a sample")

    def build(self, record: dict[str, Any], source: str = "") -> BuiltSample:
        """Parse + tokenize + apply ``max_seq_length``; raises ``RecordError`` for invalid records."""
        parsed = self.parse(record)
        sample = self.tokenize(parsed, source)
        limit = self.config.max_seq_length
        if len(sample.input_ids) > limit:
            if self.config.overlong == "drop":
                return BuiltSample(sample, dropped=f"longer than max_seq_length ({len(sample.input_ids)} > {limit})")
            sample.input_ids = sample.input_ids[:limit]
            sample.loss_mask = sample.loss_mask[:limit]
            sample.segments = [(s, min(e, limit), t) for s, e, t in sample.segments if s < limit]
            sample.truncated = True
        if len(sample.input_ids) < self.config.min_seq_length:
            return BuiltSample(sample, dropped=f"shorter than min_seq_length ({self.config.min_seq_length} tokens)")
        if len(sample.input_ids) < 2 or not any(sample.loss_mask):
            reason = "no trained tokens left after truncation" if sample.truncated else "no trained tokens"
            return BuiltSample(sample, dropped=reason)
        return BuiltSample(sample)


__all__ = ["BuiltSample", "RecordError", "SampleBuilder"]
