"""SentencePiece tokenizers (``.model`` files), the built-in tokenizer.

Chat text is encoded as NeMo's legacy SentencePiece wrapper (the reference's default for
``library: sentencepiece``) encodes it: cut at the control strings, each run of text encoded apart,
a bare leading ``▁`` dropped from a run between two control strings (``tokenizers/controls.py``).
The control strings are the template's control strings that the model holds as one CONTROL or
USER_DEFINED piece, where the template put them; a whitespace-only one (a user-defined ``\n``) is
never a cut: nobody registers a newline as a special token, and the reference encodes it in the text.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as sp_model

from sft_data.errors import SftError
from sft_data.tokenizers.controls import Encoded, encode_between_controls
from sft_data.tokenizers.files import fingerprint_files

SEPARATOR = "\u2581"


class SentencePieceTokenizer:
    kind = "sentencepiece"
    chat_template = None
    threads: int | None = None
    """1: encode on this thread only (``prepare`` runs one worker per core); None: SentencePiece
    encodes a batch on every core."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._sp = spm.SentencePieceProcessor()
        try:
            self._sp.Load(str(self.path))
        except (OSError, RuntimeError) as exc:
            raise SftError(f"{self.path}: not a SentencePiece model ({exc})") from None
        self.vocab_size = self._sp.GetPieceSize()
        self.bos_id = _valid(self._sp.bos_id())
        self.eos_id = _valid(self._sp.eos_id())
        self.pad_id = _valid(self._sp.pad_id())
        self.bos_token = self._sp.IdToPiece(self.bos_id) if self.bos_id is not None else None
        self.eos_token = self._sp.IdToPiece(self.eos_id) if self.eos_id is not None else None
        # Control and user-defined pieces are "one token" for templates. The processor exposes
        # no user-defined test, so the piece types come from the model proto.
        proto = sp_model.ModelProto()
        proto.ParseFromString(self.path.read_bytes())
        single_types = (sp_model.ModelProto.SentencePiece.CONTROL, sp_model.ModelProto.SentencePiece.USER_DEFINED)
        self._single = {p.piece: i for i, p in enumerate(proto.pieces) if p.type in single_types}
        # As the reference: the id of "▁" (the unknown id when the model has no such piece).
        self._separator_id = self._sp.PieceToId(SEPARATOR)

    def encode(self, text: str) -> list[int]:
        return list(self._sp.EncodeAsIds(text))

    def encode_with_controls(
        self, texts: Sequence[str], controls: Sequence[Sequence[tuple[int, int]]], open_ends: Sequence[bool]
    ) -> list[Encoded]:
        cuts = [
            [(s, e) for s, e in spans if text[s:e] in self._single and text[s:e].strip()]
            for text, spans in zip(texts, controls, strict=True)
        ]
        return encode_between_controls(
            texts, cuts, open_ends, self._single.__getitem__, self._encode_runs, trim_id=self._separator_id
        )

    def _encode_runs(self, runs: list[str]) -> list[tuple[list[int], list[tuple[int, int]]]]:
        threads = {} if self.threads is None else {"num_threads": self.threads}
        return [(r["ids"], r["offsets"]) for r in self._sp.Encode(runs, return_type="offset_mapping", **threads)]

    def decode(self, ids: Sequence[int]) -> str:
        return self._sp.DecodeIds([int(i) for i in ids])

    def token_to_id(self, token: str) -> int | None:
        return self._single.get(token)

    def id_to_piece(self, token_id: int) -> str:
        return self._sp.IdToPiece(int(token_id))

    def files(self) -> list[Path]:
        return [self.path]

    def fingerprint(self) -> str:
        return fingerprint_files(self.files())

    def __repr__(self) -> str:
        return f"SentencePieceTokenizer({str(self.path)!r}, vocab_size={self.vocab_size})"


def _valid(token_id: int) -> int | None:
    return token_id if token_id >= 0 else None


class SentencePieceLoader:
    name = "sentencepiece"

    def can_load(self, path: Path) -> bool:
        return path.is_file() and path.suffix == ".model"

    def load(self, path: Path) -> SentencePieceTokenizer:
        return SentencePieceTokenizer(path)
