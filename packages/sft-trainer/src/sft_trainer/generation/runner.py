"""Text in, text out: sft_model's token-level generation with a tokenizer, stop strings, streaming
and batches. ``Generator`` wraps a ``.nemo`` (``sft generate``); ``complete`` also serves a model
being trained (validation-time generation metrics)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pluggy
from sft_core import SftError
from sft_data.registries import DataRegistries
from sft_data.tokenizers import load_tokenizer
from sft_data.tokenizers.base import Tokenizer

from sft_trainer.generation.prompts import Prompt, PromptBuilder


@dataclass
class Completion:
    text: str
    tokens: list[int]
    finish_reason: str
    """``stop`` (EOS, end of turn or a stop string) or ``length``."""


def cut_at_stop(text: str, stop_strings: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to the earliest stop string, and whether one was found."""
    cuts = [i for i in (text.find(s) for s in stop_strings) if i >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


class TextStream:
    """Decoded text of a growing id list, handed out as deltas.

    Text is decoded as a whole each time (pieces decoded alone lose SentencePiece's spaces), and
    the last ``len(longest stop string) - 1`` characters are held back until the reply ends, so a
    stop string is never half printed.
    """

    def __init__(self, tokenizer: Tokenizer, stop_strings: Sequence[str]):
        self.tokenizer, self.stop_strings = tokenizer, list(stop_strings)
        self.hold = max((len(s) for s in self.stop_strings), default=1) - 1
        self.shown = 0

    def feed(self, ids: Sequence[int]) -> str:
        text, stopped = cut_at_stop(self.tokenizer.decode(list(ids)), self.stop_strings)
        end = len(text) if stopped else max(len(text) - self.hold, self.shown)
        delta, self.shown = text[self.shown:end], end
        return delta

    def finish(self, ids: Sequence[int]) -> str:
        text, _ = cut_at_stop(self.tokenizer.decode(list(ids)), self.stop_strings)
        delta, self.shown = text[self.shown:], len(text)
        return delta


def complete(model, tokenizer: Tokenizer, prompts: Sequence[Sequence[int]], params, *, stop_ids: Sequence[int] = (),
             stop_strings: Sequence[str] = (), seeds: Sequence[int] | None = None,
             on_text: Callable[[int, str], None] | None = None) -> list[Completion]:
    """Generate for a batch of prompt ids; ``on_text(row, delta)`` streams each row's text."""
    from sft_model.generate import generate

    stop_strings = [s for s in stop_strings if s]
    streams = [TextStream(tokenizer, stop_strings) for _ in prompts]

    def stop(row: int, ids: list[int]) -> bool:
        return bool(stop_strings) and cut_at_stop(tokenizer.decode(ids), stop_strings)[1]

    outputs: list[list[int]] = [[] for _ in prompts]

    def on_token(row: int, token: int) -> None:
        outputs[row].append(token)
        delta = streams[row].feed(outputs[row])
        if delta:
            on_text(row, delta)

    pad = tokenizer.pad_id if tokenizer.pad_id is not None else (tokenizer.eos_id or 0)
    results = generate(model, prompts, params, stop_ids=stop_ids, pad_id=pad, stop=stop,
                       on_token=on_token if on_text else None, seeds=seeds)
    out = []
    for row, result in enumerate(results):
        if on_text is not None:
            rest = streams[row].finish(result.tokens)
            if rest:
                on_text(row, rest)
        text, _ = cut_at_stop(tokenizer.decode(result.tokens), stop_strings)
        out.append(Completion(text, result.tokens, result.finish_reason))
    return out


class Generator:
    """A ``.nemo`` ready to answer prompts with its stored template (what ``sft generate`` runs).

    An adapter-only ``.nemo`` runs on its base (``base``, else the one it records) with the adapter
    applied, and with the template it was trained with; ``pm`` finds its PEFT method.
    """

    def __init__(self, path: str | Path, registries: DataRegistries, extra_stop: Sequence[str] = (), *,
                 pm: pluggy.PluginManager | None = None, base: str | Path | None = None):
        from sft_trainer.adapters import load_for_use

        # kept: its temporary directory holds the tokenizer files
        self.loaded, config = load_for_use(path, pm, base=base)
        if self.loaded.tokenizer is None:
            raise SftError(f"{path}: the .nemo carries no tokenizer")
        self.tokenizer = load_tokenizer(self.loaded.tokenizer.path, registries.tokenizers)
        self.prompts = PromptBuilder(config.data or {}, self.tokenizer, registries)
        self.stop_ids, strings = self.prompts.stop_markers()
        self.stop_strings = [*strings, *extra_stop]

    def run(self, prompts: Sequence[Prompt], params, *, batch_size: int = 8, seed: int | None = None,
            on_text: Callable[[int, str], None] | None = None) -> Iterator[Completion]:
        """Completions in prompt order, ``batch_size`` prompts per forward pass."""
        for start in range(0, len(prompts), batch_size):
            batch = prompts[start:start + batch_size]
            seeds = None if seed is None else [seed + start + i for i in range(len(batch))]
            stream = None if on_text is None else (lambda row, delta, s=start: on_text(s + row, delta))
            yield from complete(self.loaded, self.tokenizer, [p.ids for p in batch], params, stop_ids=self.stop_ids,
                                stop_strings=self.stop_strings, seeds=seeds, on_text=stream)
