"""Records in, training samples out: parse, render, tokenize, truncate, mask.

``SampleBuilder`` holds everything fixed for a run (config, tokenizer, format, template) so each
record costs only its own work. Conversations are rendered one by one and encoded many at a time
(``build_many``): one tokenizer call for a whole batch of conversations.

A rendered conversation must still hold every part of its record (``completeness``), else the record
is invalid. Never trained: an empty ``<think></think>`` block a hybrid template inserts; reasoning
only when ``train_reasoning`` is off (the think tags around it then stay untrained as well).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from sft_data.completeness import lost_parts
from sft_data.config import DataConfig
from sft_data.encoding import ChatEncoder
from sft_data.errors import ConfigError, RecordError, SftError
from sft_data.registries import DataRegistries
from sft_data.templates.markers import EMPTY_THINK, subtract
from sft_data.templates.nemo import NemoChatTemplate
from sft_data.templates.prompt_response import PromptResponseTokenizer
from sft_data.tokenizers.base import Tokenizer
from sft_data.types import REASONING, Conversation, PromptResponse, RenderedChat, TokenizedSample


@dataclass
class BuiltSample:
    """The outcome for one record: a sample, or why it was dropped."""

    sample: TokenizedSample
    dropped: str | None = None
    """Why the sample cannot be trained on (e.g. every trained token was truncated away)."""


class SampleBuilder:
    def __init__(self, config: DataConfig, tokenizer: Tokenizer, fmt: Any, registries: DataRegistries,
                 detail: bool = False):
        """``detail``: samples also say, per token, whether it is reasoning, a tool call or a tool
        result (``TokenizedSample.kinds``; for previews, at the cost of extra renderings)."""
        self.config = config
        self.tokenizer = tokenizer
        self.format = fmt
        self.registries = registries
        self.detail = detail
        self.encoder = ChatEncoder(tokenizer, kinds=detail)
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
                template.check_tokenizer(self.tokenizer)
            self._template = template
        return self._template

    def chat_settings(self) -> dict[str, Any] | None:
        """The chat template this builder rendered with, as ``DataConfig`` settings that bring it back
        (``sft train`` stores them in the .nemo for ``sft generate``); None before any conversation.

        A Jinja template is stored as its source unless it is registered under its name, so the
        .nemo does not depend on a template file or name that may be gone later.
        """
        template = self._template
        if template is None:
            return None
        if isinstance(template, NemoChatTemplate):
            return {"chat_template": template.name, "chat_prompt_tokens": template.tokens.to_dict()}
        templates = self.registries.chat_templates
        if not hasattr(template, "source") or (template.name in templates and templates.get(template.name) is template):
            return {"chat_template": template.name}
        return {"chat_template": template.source}

    def parse(self, record: dict[str, Any]):
        return self.format.parse(record, self.config)

    def render(self, conversation: Conversation, *, add_generation_prompt: bool = False) -> RenderedChat:
        return self.encoder.render(self.chat_template, conversation, add_generation_prompt=add_generation_prompt)

    def tokenize(self, parsed, source: str = "") -> TokenizedSample:
        """The full sample before length limits (used by previews and generation)."""
        return self._samples([self._prepare(parsed)], [source])[0]

    def _prepare(self, parsed) -> PromptResponse | RenderedChat:
        if isinstance(parsed, PromptResponse):
            return parsed
        if not isinstance(parsed, Conversation):
            raise SftError(f"format {self.format.name!r} returned {type(parsed).__name__}, not a sample")
        rendered = self.render(parsed)
        lost = lost_parts(parsed, rendered.text)
        if lost:
            more = f" and {len(lost) - 2} more" if len(lost) > 2 else ""
            raise RecordError(
                f"chat template {self.chat_template.name!r} drops {'; '.join(lost[:2])}{more} (not in the rendered "
                "text, so it would be trained without them); use a chat template that renders them"
            )
        untrained = [m.span() for m in EMPTY_THINK.finditer(rendered.text)]
        if not self.config.train_reasoning:
            untrained += rendered.spans_of(REASONING)
        if self.detail and any(t.tool_calls for t in parsed.turns):
            extra = getattr(self.chat_template, "tool_call_regions", None)
            if extra is not None:
                regions = sorted((*rendered.regions, *extra(parsed, self.tokenizer, rendered.text)))
                rendered = replace(rendered, regions=tuple(regions))
        if untrained:
            rendered = replace(rendered, trained=tuple(subtract(rendered.trained, untrained)))
        return rendered

    def _samples(self, items: Sequence[PromptResponse | RenderedChat], sources: Sequence[str]) -> list[TokenizedSample]:
        chats = [i for i, item in enumerate(items) if isinstance(item, RenderedChat)]
        encoded = iter(self.encoder.encode_many([items[i] for i in chats], [sources[i] for i in chats]))
        out = []
        for item, source in zip(items, sources, strict=True):
            if isinstance(item, RenderedChat):
                sample = next(encoded)
                if not self.config.answer_only_loss:
                    sample.loss_mask = [j > 0 for j in range(len(sample.input_ids))]
            else:
                if self._prompt_response is None:
                    self._prompt_response = PromptResponseTokenizer(self.config, self.tokenizer)
                sample = self._prompt_response(item, source)
            out.append(sample)
        return out

    def build(self, record: dict[str, Any], source: str = "") -> BuiltSample:
        """Parse + tokenize + apply ``max_seq_length``; raises ``RecordError`` for invalid records."""
        result = self.build_many([(record, source)])[0]
        if isinstance(result, RecordError):
            raise result
        return result

    def build_many(self, records: Sequence[tuple[dict[str, Any], str]]) -> list[BuiltSample | RecordError]:
        """``build`` for many ``(record, source)`` pairs, encoded together; an invalid record's entry is
        its ``RecordError``. Any other error names the record that raised it (``ConfigError`` does not:
        it is the settings' or the tokenizer's fault, whatever the data)."""
        results: list[BuiltSample | RecordError | None] = [None] * len(records)
        valid: list[int] = []
        items: list[PromptResponse | RenderedChat] = []
        for i, (record, source) in enumerate(records):
            try:
                items.append(self._prepare(self.parse(record)))
            except RecordError as exc:
                results[i] = exc
                continue
            except ConfigError:
                raise
            except SftError as exc:  # a config problem surfaced by this record
                raise SftError(f"{source}: {exc}" if source else str(exc)) from None
            valid.append(i)
        for i, sample in zip(valid, self._samples(items, [records[i][1] for i in valid]), strict=True):
            results[i] = self._limit(sample)
        return results  # type: ignore[return-value]

    def _limit(self, sample: TokenizedSample) -> BuiltSample:
        limit = self.config.max_seq_length
        if len(sample.input_ids) > limit:
            if self.config.overlong == "drop":
                return BuiltSample(sample, dropped=f"longer than max_seq_length ({len(sample.input_ids)} > {limit})")
            sample.input_ids = sample.input_ids[:limit]
            sample.loss_mask = sample.loss_mask[:limit]
            if sample.kinds is not None:
                sample.kinds = sample.kinds[:limit]
            sample.truncated = True
        if len(sample.input_ids) < self.config.min_seq_length:
            return BuiltSample(sample, dropped=f"shorter than min_seq_length ({self.config.min_seq_length} tokens)")
        if len(sample.input_ids) < 2 or not any(sample.loss_mask):
            reason = "no trained tokens left after truncation" if sample.truncated else "no trained tokens"
            return BuiltSample(sample, dropped=reason)
        return BuiltSample(sample)


__all__ = ["BuiltSample", "RecordError", "SampleBuilder"]
