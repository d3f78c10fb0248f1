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


@dataclass(frozen=True)
class Conversation:
    """A chat sample. ``system`` is kept apart because several formats carry it apart."""

    turns: tuple[Turn, ...]
    system: str | None = None
    nemo_type: str | None = None
    """NeMo chat ``type``: None, ``VALUE_TO_TEXT`` or ``TEXT_TO_VALUE``."""
    masked_speakers: tuple[str, ...] = ("User",)
    """NeMo chat ``mask``: speakers whose turns are never trained."""


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

    @classmethod
    def from_segments(cls, segments: Iterable[Segment], open_end: bool = False) -> RenderedChat:
        """``segments`` joined, with their trained and control (``special``) character spans."""
        parts: list[str] = []
        trained: list[tuple[int, int]] = []
        controls: list[tuple[int, int]] = []
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
            parts.append(seg.text)
            pos = end
        return cls("".join(parts), tuple(trained), tuple(controls), open_end)


@dataclass
class TokenizedSample:
    """Token ids with their loss mask (see the module docstring for the convention)."""

    input_ids: list[int]
    loss_mask: list[bool]
    truncated: bool = False
    source: str = ""
    """Where it came from, ``file:line``."""

    def __post_init__(self) -> None:
        if len(self.input_ids) != len(self.loss_mask):
            raise ValueError("input_ids and loss_mask differ in length")

    @property
    def num_trained(self) -> int:
        return sum(self.loss_mask)
