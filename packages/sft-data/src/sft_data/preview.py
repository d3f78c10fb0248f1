"""What the model sees: samples as text pieces, each marked trained or not, and as reasoning, a tool
call or a tool result where it is one (``sft preview``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sft_data.config import DataConfig
from sft_data.errors import RecordProblem
from sft_data.reading import FileSamples, SampleReader
from sft_data.registries import DataRegistries
from sft_data.tokenizers.base import Tokenizer
from sft_data.types import REASONING, TOOL_CALL, TOOL_RESULT


@dataclass
class PreviewItem:
    source: str
    format: str
    pieces: list[tuple[str, bool, str | None]]
    """The sample's text split where training starts or stops or the kind changes:
    ``(text, trained, kind)``, kind one of ``KINDS`` or None for the rest."""
    num_tokens: int
    num_trained: int
    truncated: bool
    dropped: str | None
    kinds: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Per kind present: ``(tokens, trained tokens)``."""


KINDS = (TOOL_CALL, TOOL_RESULT, REASONING)
KIND_NAMES = {TOOL_CALL: "tool calls", TOOL_RESULT: "tool results", REASONING: "reasoning"}


def kind_summary(item: PreviewItem) -> list[str]:
    """``"tool calls 12 (trained)"`` per kind in the sample: its tokens, and whether they are trained."""
    out = []
    for kind in KINDS:
        if kind not in item.kinds:
            continue
        tokens, trained = item.kinds[kind]
        how = "trained" if trained == tokens else "not trained" if not trained else f"{trained} trained"
        out.append(f"{KIND_NAMES[kind]} {tokens} ({how})")
    return out


def display_pieces(tokenizer: Tokenizer, ids: Sequence[int], mask: Sequence[bool],
                   kinds: Sequence[str | None] | None = None) -> list[tuple[str, bool, str | None]]:
    """Decode ``ids`` into runs of equal mask and kind, showing control tokens (which decode to
    nothing) by name.

    Runs are decoded as differences of prefix decodes, so spaces at run boundaries survive
    (SentencePiece drops the leading space of the first piece it decodes).
    """

    def is_control(i: int) -> bool:
        return tokenizer.decode([i]) == "" and tokenizer.token_to_id(tokenizer.id_to_piece(i)) == i

    kinds = kinds if kinds is not None else [None] * len(ids)
    pieces: list[tuple[str, bool, str | None]] = []
    plain: list[int] = []
    decoded = ""
    j = 0
    while j < len(ids):
        control = is_control(ids[j])
        k = j
        while k < len(ids) and mask[k] == mask[j] and kinds[k] == kinds[j] and is_control(ids[k]) == control:
            k += 1
        if control:
            text = "".join(tokenizer.id_to_piece(i) for i in ids[j:k])
        else:
            plain.extend(ids[j:k])
            full = tokenizer.decode(plain)
            text, decoded = full[len(decoded):], full
        if pieces and pieces[-1][1:] == (bool(mask[j]), kinds[j]):
            pieces[-1] = (pieces[-1][0] + text, bool(mask[j]), kinds[j])
        else:
            pieces.append((text, bool(mask[j]), kinds[j]))
        j = k
    return pieces


def preview(
    path: str | Path,
    tokenizer: Tokenizer,
    config: DataConfig,
    n: int = 3,
    registries: DataRegistries | None = None,
) -> Iterator[PreviewItem | RecordProblem]:
    """The first ``n`` valid samples of ``path`` (and any invalid records met on the way)."""
    reader = SampleReader(config, tokenizer, registries, detail=True)
    info = FileSamples(str(path))
    reported = 0
    for shown, (record, built) in enumerate(reader.read(path, info, batch_size=max(n, 1)), start=1):
        while reported < len(info.problems):
            yield info.problems[reported]
            reported += 1
        sample = built.sample
        counts: dict[str, tuple[int, int]] = {}
        for kind, trained in zip(sample.kinds or (), sample.loss_mask, strict=False):
            if kind is not None:
                tokens, done = counts.get(kind, (0, 0))
                counts[kind] = (tokens + 1, done + trained)
        yield PreviewItem(
            source=record.location,
            format=info.format or "",
            pieces=display_pieces(tokenizer, sample.input_ids, sample.loss_mask, sample.kinds),
            num_tokens=len(sample.input_ids),
            num_trained=sample.num_trained,
            truncated=sample.truncated,
            dropped=built.dropped,
            kinds=counts,
        )
        if shown >= n:
            return
    yield from info.problems[reported:]
