"""What the model sees: samples as text pieces, each marked trained or not (``sft preview``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from sft_data.config import DataConfig
from sft_data.errors import RecordProblem
from sft_data.reading import FileSamples, SampleReader
from sft_data.registries import DataRegistries
from sft_data.tokenizers.base import Tokenizer


@dataclass
class PreviewItem:
    source: str
    format: str
    pieces: list[tuple[str, bool]]
    """The sample's text split where training starts or stops: ``(text, trained)``."""
    num_tokens: int
    num_trained: int
    truncated: bool
    dropped: str | None


def display_pieces(tokenizer: Tokenizer, ids: Sequence[int], mask: Sequence[bool]) -> list[tuple[str, bool]]:
    """Decode ``ids`` into runs of equal mask, showing control tokens (which decode to nothing) by name.

    Runs are decoded as differences of prefix decodes, so spaces at run boundaries survive
    (SentencePiece drops the leading space of the first piece it decodes).
    """

    def is_control(i: int) -> bool:
        return tokenizer.decode([i]) == "" and tokenizer.token_to_id(tokenizer.id_to_piece(i)) == i

    pieces: list[tuple[str, bool]] = []
    plain: list[int] = []
    decoded = ""
    j = 0
    while j < len(ids):
        control = is_control(ids[j])
        k = j
        while k < len(ids) and mask[k] == mask[j] and is_control(ids[k]) == control:
            k += 1
        if control:
            text = "".join(tokenizer.id_to_piece(i) for i in ids[j:k])
        else:
            plain.extend(ids[j:k])
            full = tokenizer.decode(plain)
            text, decoded = full[len(decoded):], full
        if pieces and pieces[-1][1] == mask[j]:
            pieces[-1] = (pieces[-1][0] + text, mask[j])
        else:
            pieces.append((text, bool(mask[j])))
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
    reader = SampleReader(config, tokenizer, registries)
    info = FileSamples(str(path))
    reported = 0
    for shown, (record, built) in enumerate(reader.read(path, info, batch_size=max(n, 1)), start=1):
        while reported < len(info.problems):
            yield info.problems[reported]
            reported += 1
        sample = built.sample
        yield PreviewItem(
            source=record.location,
            format=info.format or "",
            pieces=display_pieces(tokenizer, sample.input_ids, sample.loss_mask),
            num_tokens=len(sample.input_ids),
            num_trained=sample.num_trained,
            truncated=sample.truncated,
            dropped=built.dropped,
        )
        if shown >= n:
            return
    yield from info.problems[reported:]
