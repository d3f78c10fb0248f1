"""The data model shared by formats, templates, tokenizers and packing.

Flow: a JSONL record is parsed by a *format* into a ``PromptResponse`` or a ``Conversation``;
a *template* renders a conversation into ``Segment``s (text pieces marked trained or not, control
strings marked special); their text is joined into one ``RenderedChat`` (the text, its trained
character spans, where the template put control strings), which is encoded in one pass and masked
from character offsets (``sft_data.encoding``) into a ``TokenizedSample``.

Loss-mask convention: ``TokenizedSample.loss_mask[j]`` is True when predicting ``input_ids[j]``
(from ``input_ids[:j]``) is trained. ``loss_mask[0]`` is therefore always False. After the usual
shift (``tokens = ids[:-1]``, ``labels = ids[1:]``) the mask of the label positions is
``loss_mask[1:]``: one boolean per label position.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

REASONING = "reasoning"
TOOL_CALL = "tool_call"
TOOL_RESULT = "tool_result"


@dataclass(frozen=True)
class PromptResponse:
    """A prompt-response record: its string fields, to be filled into a prompt template."""

    fields: dict[str, str]


@dataclass(frozen=True)
class Turn:
    """One message of a conversation."""

    role: str
    """Canonical role: ``system``, ``user``, ``assistant`` or another role such as ``tool``."""
    content: str
    speaker: str | None = None
    """The speaker's name as written in the data (NeMo's ``from``); templates that print names use it."""
    label: str | None = None
    """NeMo chat ``label`` (attribute string used by VALUE_TO_TEXT / TEXT_TO_VALUE)."""
    trained: bool | None = None
    """Whether this turn's content is trained; None lets the template decide (assistant turns)."""
    tool_calls: tuple[dict[str, Any], ...] | None = None
    """An assistant's tool calls as the record gives them (OpenAI: ``{"id", "type": "function",
    "function": {"name", "arguments"}}``), passed to the template unchanged."""
    tool_call_id: str | None = None
    """A tool result's ``tool_call_id``."""
    name: str | None = None
    """A tool result's tool ``name`` (some templates print it)."""
    reasoning: str | None = None
    """An assistant's ``reasoning_content``."""


@dataclass(frozen=True)
class Conversation:
    """A chat sample. ``system`` is kept apart because several formats carry it apart."""

    turns: tuple[Turn, ...]
    system: str | None = None
    nemo_type: str | None = None
    """NeMo chat ``type``: None, ``VALUE_TO_TEXT`` or ``TEXT_TO_VALUE``."""
    masked_speakers: tuple[str, ...] = ("User",)
    """NeMo chat ``mask``: speakers whose turns are never trained."""
    tools: tuple[dict[str, Any], ...] | None = None
    """Tool definitions (OpenAI style), passed to the template as ``tools``."""


Parsed = PromptResponse | Conversation


@dataclass(frozen=True)
class Segment:
    """A piece of rendered text.

    ``special`` marks a control string the template put there (``<|im_start|>``, a BOS piece...):
    it is encoded as the tokenizer's single token when the vocabulary has one. Plain text is
    always encoded as text, so a user typing ``<|im_start|>`` cannot inject a control token.
    """

    text: str
    trained: bool = False
    special: bool = False
    role: str | None = None
    """The role whose turn this piece belongs to (for previews); None for scaffolding."""
    kind: str | None = None
    """What the piece is, where a template can tell: ``REASONING``, ``TOOL_CALL``, ``TOOL_RESULT``."""


@dataclass(frozen=True)
class RenderedChat:
    """A rendered conversation as one text, before tokenization."""

    text: str
    trained: tuple[tuple[int, int], ...]
    """Sorted, disjoint ``[start, end)`` character spans whose tokens are trained."""
    controls: tuple[tuple[int, int], ...]
    """Character spans of the control strings the template placed (``Segment.special``)."""
    open_end: bool = False
    """A generation prompt: the text goes on with the model's answer (how its last piece encodes)."""
    regions: tuple[tuple[int, int, str], ...] = ()
    """``(start, end, kind)`` character spans of reasoning, tool calls and tool results (``Segment.kind``)."""

    @classmethod
    def from_segments(cls, segments: Iterable[Segment], open_end: bool = False) -> RenderedChat:
        """``segments`` joined, with their trained, control (``special``) and kind character spans."""
        parts: list[str] = []
        trained: list[tuple[int, int]] = []
        controls: list[tuple[int, int]] = []
        regions: list[tuple[int, int, str]] = []
        pos = 0
        for seg in segments:
            if not seg.text:
                continue
            end = pos + len(seg.text)
            if seg.trained:
                if trained and trained[-1][1] == pos:
                    trained[-1] = (trained[-1][0], end)
                else:
                    trained.append((pos, end))
            if seg.special:
                controls.append((pos, end))
            if seg.kind is not None:
                if regions and regions[-1][1] == pos and regions[-1][2] == seg.kind:
                    regions[-1] = (regions[-1][0], end, seg.kind)
                else:
                    regions.append((pos, end, seg.kind))
            parts.append(seg.text)
            pos = end
        return cls("".join(parts), tuple(trained), tuple(controls), open_end, tuple(regions))

    def spans_of(self, kind: str) -> list[tuple[int, int]]:
        return [(start, end) for start, end, k in self.regions if k == kind]


@dataclass
class TokenizedSample:
    """Token ids with their loss mask (see the module docstring for the convention)."""

    input_ids: list[int]
    loss_mask: list[bool]
    truncated: bool = False
    source: str = ""
    """Where it came from, ``file:line``."""
    kinds: list[str | None] | None = None
    """Per token, the ``RenderedChat.regions`` kind it falls in (previews only; None otherwise)."""

    def __post_init__(self) -> None:
        if len(self.input_ids) != len(self.loss_mask):
            raise ValueError("input_ids and loss_mask differ in length")

    @property
    def num_trained(self) -> int:
        return sum(self.loss_mask)
