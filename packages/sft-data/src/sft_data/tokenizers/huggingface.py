"""Hugging Face ``tokenizer.json`` tokenizers, read with the ``tokenizers`` library.

bos/eos/pad tokens and the chat template come from ``tokenizer_config.json`` (and
``chat_template.jinja`` / ``special_tokens_map.json``) beside ``tokenizer.json`` when present.

Chat text is encoded whole, in one ``encode_batch`` call over many conversations, with special
tokens recognised: the ids are exactly what ``apply_chat_template`` and inference produce. That is
only right while every special-token string in the text is one the template wrote; a conversation
whose messages contain one (``<|im_end|>`` typed by a user) is instead cut at the template's control
strings, its text runs encoded with special tokens treated as text (``tokenizers/controls.py``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer as _HFTokenizer

from sft_data.errors import SftError
from sft_data.tokenizers.controls import Encoded, encode_between_controls
from sft_data.tokenizers.files import fingerprint_files

SIDE_FILES = ("tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


class HuggingFaceTokenizer:
    kind = "huggingface"
    threads: int | None = None
    """1: encode on this thread only (``prepare`` runs one worker per core); None: the library's
    thread pool encodes a batch on every core."""

    def __init__(self, path: Path):
        path = Path(path)
        self.directory = path if path.is_dir() else path.parent
        self.path = path / "tokenizer.json" if path.is_dir() else path
        try:
            self._tok = _HFTokenizer.from_file(str(self.path))
        except Exception as exc:  # the Rust side raises plain Exception subclasses
            raise SftError(f"{self.path}: not a Hugging Face tokenizer.json ({_one_line(exc)})") from None
        # Special-token text inside user data must stay text (no turn injection).
        self._tok.encode_special_tokens = True
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)
        # Control tokens a chat template may write (only ``special`` added tokens: the others are
        # matched in plain text by the tokenizer anyway).
        self.special_tokens: tuple[str, ...] = tuple(
            t.content for _, t in sorted(self._tok.get_added_tokens_decoder().items()) if t.special
        )
        longest_first = sorted(self.special_tokens, key=len, reverse=True)
        self._special_re = re.compile("|".join(map(re.escape, longest_first))) if longest_first else None
        # Without special tokens (add_special_tokens=False) a post-processor changes no id; it can
        # only trim whitespace off the offsets (ByteLevel trim_offsets), which would hide a newline
        # token from the trained span it belongs to. Offsets here are the untrimmed ones.
        self._tok.post_processor = None
        config = {**read_json(self.directory / "special_tokens_map.json"),
                  **read_json(self.directory / "tokenizer_config.json")}
        self.bos_token = _token_text(config.get("bos_token"))
        self.eos_token = _token_text(config.get("eos_token"))
        self.pad_token = _token_text(config.get("pad_token"))
        self.bos_id = self._config_token_id("bos_token", self.bos_token)
        self.eos_id = self._config_token_id("eos_token", self.eos_token)
        self.pad_id = self._config_token_id("pad_token", self.pad_token)
        # As transformers: a chat_template.jinja file takes priority over the config's entry.
        template_file = self.directory / "chat_template.jinja"
        template = config_chat_template(config)
        if template_file.is_file():
            try:
                template = template_file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise SftError(f"{template_file}: cannot read the chat template ({_one_line(exc)})") from None
        self.chat_template: str | None = template

    def _config_token_id(self, key: str, token: str | None) -> int | None:
        # A configured token missing from the vocabulary would be written as plain text by templates
        # and never learned as one id; say so instead.
        if token is None:
            return None
        token_id = self.token_to_id(token)
        if token_id is None:
            raise SftError(f"{self.directory}: {key} {token!r} from the tokenizer config is not in the vocabulary")
        return token_id

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def encode_with_controls(
        self, texts: Sequence[str], controls: Sequence[Sequence[tuple[int, int]]], open_ends: Sequence[bool]
    ) -> list[Encoded]:
        whole: list[int] = []
        cut: list[int] = []
        for i, (text, spans) in enumerate(zip(texts, controls, strict=True)):
            written = {span for span in spans if self._tok.token_to_id(text[span[0]:span[1]]) is not None}
            found = self._special_re.finditer(text) if self._special_re is not None else ()
            (whole if all(m.span() in written for m in found) else cut).append(i)
        out: list[Encoded | None] = [None] * len(texts)
        if whole:
            self._tok.encode_special_tokens = False
            try:
                encodings = self._encode_batch([texts[i] for i in whole])
            finally:
                self._tok.encode_special_tokens = True
            for i, enc in zip(whole, encodings, strict=True):
                out[i] = (enc.ids, EncodingOffsets(enc))
        if cut:
            texts_cut = [texts[i] for i in cut]
            spans_cut = [[s for s in controls[i] if self._tok.token_to_id(texts[i][s[0]:s[1]]) is not None]
                         for i in cut]
            encoded = encode_between_controls(texts_cut, spans_cut, [open_ends[i] for i in cut],
                                              self._tok.token_to_id, self._encode_runs)
            for i, item in zip(cut, encoded, strict=True):
                out[i] = item
        return out  # type: ignore[return-value]

    def _encode_batch(self, texts: list[str]) -> list:
        if self.threads == 1:
            return [self._tok.encode(text, add_special_tokens=False) for text in texts]
        return self._tok.encode_batch(texts, add_special_tokens=False)

    def _encode_runs(self, runs: list[str]) -> list[tuple[list[int], list[tuple[int, int]]]]:
        return [(enc.ids, enc.offsets) for enc in self._encode_batch(runs)]

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def id_to_piece(self, token_id: int) -> str:
        return self._tok.id_to_token(int(token_id)) or ""

    def files(self) -> list[Path]:
        return [self.path, *(self.directory / n for n in SIDE_FILES if (self.directory / n).is_file())]

    def fingerprint(self) -> str:
        return fingerprint_files(self.files())

    def __repr__(self) -> str:
        return f"HuggingFaceTokenizer({str(self.path)!r}, vocab_size={self.vocab_size})"


class EncodingOffsets:
    """The offsets of one ``tokenizers`` Encoding, read only around the trained spans' edges.

    Turning every token's offsets into Python objects costs about as much as the encoding itself;
    the mask needs only the tokens at each span's two ends. Same rule as ``sft_data.encoding``: a
    token with any character in the span is trained, one covering no character belongs to the
    character after it. Token offsets never go backwards (one text, no pair), so the trained tokens
    of a span are one run: from the first token holding one of its characters, widened over earlier
    tokens that still reach into it, to the last one, widened over later tokens that start inside it.
    """

    __slots__ = ("_enc",)

    def __init__(self, enc):
        self._enc = enc

    def __len__(self) -> int:
        return len(self._enc)

    def trained_mask(self, spans) -> list[bool]:
        enc, n = self._enc, len(self._enc)
        mask = [False] * n
        for a, b in spans:
            first = next((t for c in range(a, b) if (t := enc.char_to_token(c)) is not None), None)
            if first is None:  # every character of the span vanished in normalisation
                continue
            last = next(t for c in range(b - 1, a - 1, -1) if (t := enc.char_to_token(c)) is not None)
            while first > 0 and _reaches(enc.token_to_chars(first - 1), a):
                first -= 1
            while last + 1 < n and (chars := enc.token_to_chars(last + 1)) is not None and chars[0] < b:
                last += 1
            mask[first:last + 1] = [True] * (last + 1 - first)
        return mask


def _reaches(chars: tuple[int, int] | None, start: int) -> bool:
    """A token before the span's first covered character that still belongs to the span."""
    return chars is not None and (chars[1] > start or chars[0] == chars[1] == start)


def config_chat_template(config: dict[str, Any]) -> str | None:
    """The ``chat_template`` of a tokenizer_config.json: a string, or the ``default`` of the named-list form."""
    template = config.get("chat_template")
    if isinstance(template, list):  # [{"name": "default", "template": ...}, {"name": "tool_use", ...}]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    return template if isinstance(template, str) and template.strip() else None


def read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SftError(f"{path}: invalid JSON ({_one_line(exc)})") from None
    if not isinstance(data, dict):
        raise SftError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _one_line(exc: Exception) -> str:
    # Errors are shown as one line (errors.py); the Rust side's messages can span several.
    return " ".join(str(exc).split()) or type(exc).__name__


def _token_text(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


class HuggingFaceLoader:
    name = "huggingface"

    def can_load(self, path: Path) -> bool:
        if path.is_dir():
            return (path / "tokenizer.json").is_file()
        return path.is_file() and path.name.endswith(".json") and path.name != "tokenizer_config.json"

    def load(self, path: Path) -> HuggingFaceTokenizer:
        return HuggingFaceTokenizer(path)
