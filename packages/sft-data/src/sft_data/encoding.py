"""Rendered conversations -> token ids and loss masks: one encoding pass, masks from character offsets.

A template renders a conversation as one text (``RenderedChat``, or segments joined into one): the
characters of trained segments make the trained spans, the template's control strings the control
spans. The whole text is encoded once by the tokenizer (``Tokenizer.encode_with_controls``, many
conversations per call), so the ids are what the tokenizer produces for that text at inference, and
each token comes with the characters it covers. Masks are placed from those offsets, never from token counts, so they cannot drift (the
reference placed them by per-turn token counts, which shift whenever a turn tokenizes differently
inside the conversation than on its own).

The rule, per token with characters ``[start, end)``:

* a token is trained when any of its characters lies in a trained span. A token straddling a span
  boundary is therefore trained: the model has to produce it to produce the trained text (a
  SentencePiece ``▁yo`` whose ``▁`` is the untrained newline before an answer ``yo`` is the answer's
  first token). This is also transformers' ``return_assistant_tokens_mask`` rule (every token from
  the one holding a span's first character to the one holding its last), except that transformers
  reads trimmed offsets where a tokenizer trims them, and leaves out a token covering no character
  right at a span's start;
* a token that covers no character (SentencePiece's dummy-prefix ``▁``, the leading bytes of a
  character split into byte pieces) is trained when the character at ``start`` is: it belongs to
  the text that follows it.

A tokenizer without ``encode_with_controls`` (a plugin's) is encoded piece by piece instead: each
segment on its own, every token given its segment's span. Masks are then exact too, but the ids are
the segment-wise ones, which may differ from the tokenizer's whole-text encoding.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import pairwise

import numpy as np

from sft_data.tokenizers.base import Tokenizer
from sft_data.tokenizers.controls import Encoded, as_offsets
from sft_data.types import RenderedChat, Segment, TokenizedSample


def token_mask(offsets, spans: Sequence[tuple[int, int]]) -> list[bool]:
    """The rule applied to a tokenizer's offsets: an ``(n, 2)`` array, or an object that applies the
    same rule itself (``trained_mask(spans)``, e.g. by looking up only the span edges)."""
    own = getattr(offsets, "trained_mask", None)
    if own is not None:
        return own(spans)
    return trained_tokens(np.asarray(offsets, dtype=np.int64).reshape(-1, 2), spans).tolist()


def trained_tokens(offsets: np.ndarray, spans: Sequence[tuple[int, int]]) -> np.ndarray:
    """Per token, whether it is trained under the rule in the module docstring."""
    if not len(spans) or not len(offsets):
        return np.zeros(len(offsets), dtype=np.bool_)
    bounds = np.asarray(spans, dtype=np.int64)
    starts, ends = offsets[:, 0], offsets[:, 1]
    # Spans are sorted and disjoint: the first one ending after the token's start is the one to test.
    index = np.searchsorted(bounds[:, 1], starts, side="right")
    inside = index < len(bounds)
    first_start = bounds[np.minimum(index, len(bounds) - 1), 0]
    return inside & (first_start < np.maximum(ends, starts + 1))


def token_kinds(offsets, regions: Sequence[tuple[int, int, str]], count: int) -> list[str | None]:
    """Per token, the kind of the first region (in ``regions`` order) it overlaps, under the mask rule."""
    kinds: list[str | None] = [None] * count
    for kind in dict.fromkeys(k for _, _, k in regions):
        spans: list[tuple[int, int]] = []
        for start, end, k in sorted(regions):
            if k != kind:
                continue
            if spans and start <= spans[-1][1]:  # merged: the mask rule wants them disjoint
                spans[-1] = (spans[-1][0], max(end, spans[-1][1]))
            else:
                spans.append((start, end))
        for j, inside in enumerate(token_mask(offsets, spans)):
            if inside and kinds[j] is None:
                kinds[j] = kind
    return kinds


class ChatEncoder:
    """Encodes rendered conversations with one tokenizer."""

    def __init__(self, tokenizer: Tokenizer, kinds: bool = False):
        """``kinds``: also give each token the kind of the ``RenderedChat.regions`` it overlaps."""
        self.tokenizer = tokenizer
        self.kinds = kinds
        self._batch = getattr(tokenizer, "encode_with_controls", None)

    def encode(self, segments: Iterable[Segment], source: str = "", *, open_end: bool = False) -> TokenizedSample:
        """One conversation; ``open_end`` for a generation prompt (the answer follows)."""
        return self.encode_many([RenderedChat.from_segments(segments, open_end)], [source])[0]

    def render(self, template, conversation, *, add_generation_prompt: bool = False) -> RenderedChat:
        """``template``'s rendering as one text: straight from the template when it can give one
        (``render_text``, no segments in between), else joined from its segments."""
        direct = getattr(template, "render_text", None)
        if direct is not None:
            return direct(conversation, self.tokenizer, add_generation_prompt=add_generation_prompt)
        segments = template.render(conversation, self.tokenizer, add_generation_prompt=add_generation_prompt)
        return RenderedChat.from_segments(segments, open_end=add_generation_prompt)

    def encode_many(self, rendered: Sequence[RenderedChat], sources: Sequence[str] | None = None) -> list[TokenizedSample]:
        if self._batch is not None:
            encoded = self._batch([r.text for r in rendered], [r.controls for r in rendered],
                                  [r.open_end for r in rendered])
        else:
            encoded = [self._by_pieces(r) for r in rendered]
        samples = []
        for i, (chat, (ids, offsets)) in enumerate(zip(rendered, encoded, strict=True)):
            mask = token_mask(offsets, chat.trained)
            if mask:
                mask[0] = False  # nothing predicts the first token
            sample = TokenizedSample(list(ids), mask, source=sources[i] if sources else "")
            if self.kinds:
                sample.kinds = token_kinds(offsets, chat.regions, len(mask))
            samples.append(sample)
        return samples

    def _by_pieces(self, chat: RenderedChat) -> Encoded:
        """Fallback: every piece between control and trained-span edges encoded on its own."""
        cuts = sorted({0, len(chat.text), *(x for span in (*chat.trained, *chat.controls) for x in span)})
        controls = set(chat.controls)
        ids: list[int] = []
        offsets: list[tuple[int, int]] = []
        for start, end in pairwise(cuts):
            piece = chat.text[start:end]
            single = self.tokenizer.token_to_id(piece) if (start, end) in controls else None
            piece_ids = [single] if single is not None else self.tokenizer.encode(piece)
            ids.extend(piece_ids)
            offsets.extend([(start, end)] * len(piece_ids))
        return ids, as_offsets(offsets)
