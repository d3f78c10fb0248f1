"""Any Jinja chat template (as HF tokenizers carry them) as a ChatTemplate with exact assistant spans.

The trained spans come from the template's own structure, never from guessing at the text:

* with ``{% generation %}…{% endgeneration %}`` markers, the marked text is trained (what
  transformers' ``return_assistant_tokens_mask`` uses);
* otherwise by incremental rendering: for an assistant message ``k``, ``messages[:k]`` rendered with
  ``add_generation_prompt=True`` is the prompt the model answers, and ``messages[:k+1]`` must extend
  it; what the assistant message adds (its content and end-of-turn, up to where the next message
  starts) is trained. A template whose renders do not extend each other (it rewrites earlier turns,
  e.g. strips reasoning from all but the last answer) cannot be split this way: that is an error
  asking for generation markers, never a silent all-trained or all-untrained mask (the failure mode
  of transformers 30650 / TRL 4201).

Only the template decides about BOS: templates that print ``bos_token`` get exactly that one, and
nothing is prepended to templates that do not (as ``apply_chat_template`` tokenizes without adding
special tokens), so there is never a double BOS.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import jinja2

from sft_data.errors import RecordError, SftError
from sft_data.templates.jinja_env import compile_template, has_generation_markers, track_generation
from sft_data.templates.jinja_messages import GENERATION, template_input
from sft_data.templates.jinja_text import Protector, special_strings, to_segments
from sft_data.templates.markers import THINK_CLOSE, split_think, strip_markers, think_block
from sft_data.tokenizers.base import Tokenizer
from sft_data.types import REASONING, TOOL_CALL, TOOL_RESULT, Conversation, RenderedChat, Segment

Region = tuple[int, int, str]


@dataclass
class _Rendered:
    text: str
    """The rendered text, special-token strings from messages still as placeholders."""
    spans: list[tuple[int, int]]
    regions: list[Region]
    protector: Protector
    protected: bool

MARKERS_HINT = "add {% generation %}…{% endgeneration %} markers around the assistant text in the template"


class JinjaChatTemplate:
    """A chat template given as Jinja source, rendered in transformers' sandbox."""

    def __init__(self, source: str, name: str = "jinja", description: str | None = None):
        if not isinstance(source, str) or not source.strip():
            raise SftError(f"{name}: the chat template is empty")
        self.source = source
        self.name = name
        self.description = description or f"Jinja chat template ({name})"
        self.uses_markers = has_generation_markers(source)
        self._template = compile_template(source, name)
        self._specials: tuple[Tokenizer, list[str]] | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Compiled Jinja templates do not pickle; DataLoader workers and process pools recompile.
        return {"source": self.source, "name": self.name, "description": self.description}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["source"], state["name"], state["description"])

    def __repr__(self) -> str:
        return f"JinjaChatTemplate(name={self.name!r}, generation_markers={self.uses_markers})"

    def render(
        self, conversation: Conversation, tokenizer: Tokenizer, *, add_generation_prompt: bool = False
    ) -> list[Segment]:
        rendered = self._render_spans(conversation, tokenizer, add_generation_prompt)
        return to_segments(rendered.text, rendered.spans, rendered.protector, rendered.regions)

    def render_text(
        self, conversation: Conversation, tokenizer: Tokenizer, *, add_generation_prompt: bool = False
    ) -> RenderedChat:
        """``render`` as one text, without building segments (what training encodes)."""
        r = self._render_spans(conversation, tokenizer, add_generation_prompt)
        if r.protected:  # control strings typed in messages are placeholders to put back: lengths change
            return RenderedChat.from_segments(to_segments(r.text, r.spans, r.protector, r.regions),
                                              add_generation_prompt)
        return RenderedChat(r.text, tuple(r.spans), tuple(r.protector.template_specials(r.text)),
                            add_generation_prompt, tuple(r.regions))

    def tool_call_regions(self, conversation: Conversation, tokenizer: Tokenizer, text: str) -> list[Region]:
        """Where each assistant turn's tool calls are in ``text`` (this template's rendering of
        ``conversation``): what differs from the rendering without them. For previews: one more
        rendering per turn that calls tools."""
        regions: list[Region] = []
        turns = list(conversation.turns)
        for k, turn in enumerate(turns):
            if not turn.tool_calls:
                continue
            without = replace(conversation, turns=(*turns[:k], replace(turn, tool_calls=None), *turns[k + 1:]))
            try:
                other = self.render_text(without, tokenizer).text
            except SftError:
                continue
            # The common end first: calls written before the end-of-turn token then start where they
            # are written, even when their first character equals the token's.
            tail = _common_prefix(text[::-1], other[::-1])
            limit = min(len(text), len(other)) - tail
            start = _common_prefix(text[:limit], other[:limit])
            if len(text) - tail > start:
                regions.append((start, len(text) - tail, TOOL_CALL))
        return regions

    def _render_spans(self, conversation: Conversation, tokenizer: Tokenizer, add_generation_prompt: bool) -> _Rendered:
        """The protected rendered text, its trained spans and regions, and how it was protected."""
        given = template_input(conversation, self._special_strings(tokenizer))
        variables = {"bos_token": tokenizer.bos_token or "", "eos_token": tokenizer.eos_token or "",
                     "tools": given.tools}
        if self.uses_markers:
            with track_generation(*given.markers[GENERATION]):
                marked = self._render(given.messages, add_generation_prompt, variables)
        else:
            marked = self._render(given.messages, add_generation_prompt, variables)
        text, found, to_clean = strip_markers(marked, given.markers)
        if self.uses_markers:
            spans = self._apply_weights(found[GENERATION], given.messages, given.trainable)
        else:
            spans = [(to_clean(a), to_clean(b))
                     for a, b in self._incremental_spans(marked, given.messages, given.trainable, variables)]
        regions = [(*think_block(text, span), REASONING) for span in found[REASONING]]
        regions += [(*span, TOOL_RESULT) for span in found[TOOL_RESULT]]
        return _Rendered(text, spans, sorted(regions), given.protector, given.protected)

    def _special_strings(self, tokenizer: Tokenizer) -> list[str]:
        # Computed once per tokenizer: a run renders many conversations with the same one.
        if self._specials is None or self._specials[0] is not tokenizer:
            self._specials = (tokenizer, special_strings(tokenizer, self.source))
        return self._specials[1]

    def _render(self, messages: list[dict], add_generation_prompt: bool, variables: dict[str, Any]) -> str:
        try:
            return self._template.render(messages=messages, add_generation_prompt=add_generation_prompt, **variables)
        except jinja2.exceptions.TemplateError as exc:  # raise_exception(...) and undefined lookups
            raise RecordError(f"chat template {self.name!r} refused the conversation: {exc}") from None
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
            raise RecordError(f"chat template {self.name!r} failed on the conversation: {exc}") from None

    def _apply_weights(self, spans: list[tuple[int, int]], messages: list[dict], trainable: list[bool]):
        """Drop the spans of assistant turns excluded by the data (``weight: 0``)."""
        assistant = [ok for m, ok in zip(messages, trainable, strict=True) if m["role"] == "assistant"]
        if not spans and any(assistant):
            raise SftError(
                f"chat template {self.name!r}: the assistant spans cannot be determined: the template has "
                "{% generation %} markers but none of them enclosed an assistant message"
            )
        if all(assistant):
            return spans
        if len(spans) != len(assistant):
            raise RecordError(
                f"chat template {self.name!r} marks {len(spans)} generation span(s) for {len(assistant)} "
                "assistant turn(s), so the turns excluded by weight 0 cannot be located"
            )
        return [span for span, ok in zip(spans, assistant, strict=True) if ok]

    def _incremental_spans(
        self, full: str, messages: list[dict], trainable: list[bool], variables: dict[str, Any]
    ) -> list[tuple[int, int]]:
        spans: list[tuple[int, int]] = []
        for k, message in enumerate(messages):
            if message["role"] != "assistant" or not trainable[k]:
                continue
            try:
                prompt = self._render(messages[:k], True, variables)
                answered = self._render(messages[: k + 1], False, variables)
            except RecordError as exc:
                raise self._undeterminable(f"rendering a prefix of the conversation failed ({exc})") from None
            if not answered.startswith(prompt) or not full.startswith(answered):
                raise self._undeterminable(
                    f"the template is not prefix-stable: rendering messages[:{k}] with add_generation_prompt "
                    f"and messages[:{k + 1}] do not extend each other and the whole conversation"
                )
            added = answered[len(prompt):]
            content = message["content"] if isinstance(message["content"], str) else ""
            content = split_think(content)[2].strip() if THINK_CLOSE in content else content.strip()  # may be rewritten
            if not added or (content and content not in added):
                raise self._undeterminable(f"the text added by assistant message {k} does not contain its content")
            spans.append((len(prompt), len(answered)))
        return spans

    def _undeterminable(self, why: str) -> SftError:
        return SftError(f"chat template {self.name!r}: the assistant spans cannot be determined: {why}; {MARKERS_HINT}")


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)
