"""Hugging Face ``tokenizer.json`` tokenizers, read with the ``tokenizers`` library.

bos/eos/pad tokens and the chat template come from ``tokenizer_config.json`` (and
``chat_template.jinja`` / ``special_tokens_map.json``) beside ``tokenizer.json`` when present.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer as _HFTokenizer

from sft_data.errors import SftError
from sft_data.tokenizers.files import fingerprint_files

SIDE_FILES = ("tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


class HuggingFaceTokenizer:
    kind = "huggingface"

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
