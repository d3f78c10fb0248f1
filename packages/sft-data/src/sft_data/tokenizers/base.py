"""The tokenizer contract sft-data relies on, and the loader contract plugins register."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable


@runtime_checkable
class Tokenizer(Protocol):
    """What formats, templates and packing need from a tokenizer."""

    kind: str
    """The loader that made it (``sentencepiece``, ``huggingface``...)."""
    vocab_size: int
    bos_id: int | None
    eos_id: int | None
    pad_id: int | None
    bos_token: str | None
    eos_token: str | None
    chat_template: str | None
    """A Jinja chat template shipped with the tokenizer (HF tokenizer_config.json), if any."""

    def encode(self, text: str) -> list[int]:
        """Plain text to ids: no BOS/EOS added, and special-token text is *not* turned into control ids."""
        ...

    def decode(self, ids: Sequence[int]) -> str: ...

    # Optional, and what chat data needs to be encoded in one pass (``sft_data.encoding``):
    #
    # def encode_with_controls(self, texts, controls, open_ends) -> list[tuple[list[int], offsets]]
    #
    # Each text encoded whole, as the tokenizer encodes it at inference, where ``controls[i]`` are
    # the ``[start, end)`` character spans of the control strings the template wrote: those become
    # control ids, the same characters elsewhere stay text. ``open_ends[i]``: a generation prompt,
    # the text continues with the answer. ``offsets``: each token's ``[start, end)`` characters, as
    # an ``(n, 2)`` array, or an object with ``trained_mask(spans)`` applying the mask rule itself.
    # A tokenizer without it is encoded segment by segment (exact masks, segment-wise ids).
    #
    # Optional too: ``threads`` (None: the library's own thread pool for batches; 1: one thread).
    # ``prepare`` sets 1 on the copy each of its workers uses, so N workers keep N cores busy.

    def token_to_id(self, token: str) -> int | None:
        """The id of ``token`` when the vocabulary holds it as one token, else None."""
        ...

    def id_to_piece(self, token_id: int) -> str:
        """The vocabulary entry of an id, for display."""
        ...

    def files(self) -> list[Path]:
        """The files that make up this tokenizer (embedded into .nemo archives)."""
        ...

    def fingerprint(self) -> str:
        """A stable hash of the tokenizer files, recorded in prepared datasets."""
        ...


class TokenizerLoader(Protocol):
    """Registered through ``sft_register_tokenizers``."""

    name: str

    def can_load(self, path: Path) -> bool: ...

    def load(self, path: Path) -> Tokenizer: ...
