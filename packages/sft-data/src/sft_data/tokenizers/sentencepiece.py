"""SentencePiece tokenizers (``.model`` files), the built-in tokenizer."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as sp_model

from sft_data.errors import SftError
from sft_data.tokenizers.files import fingerprint_files


class SentencePieceTokenizer:
    kind = "sentencepiece"
    chat_template = None

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

    def encode(self, text: str) -> list[int]:
        return list(self._sp.EncodeAsIds(text))

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
