"""Training a small SentencePiece model from text, for demos and tests (``sft tokenizer train``)."""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from pathlib import Path

import sentencepiece as spm

from sft_data.errors import SftError

# Control strings of the built-in chat templates: trained in as control symbols so they encode as
# one id when a template puts them, while the same characters typed in user text stay plain text.
DEFAULT_CONTROL_SYMBOLS: tuple[str, ...] = (
    "<extra_id_0>",
    "<extra_id_1>",
    "<extra_id_2>",
    "<|im_start|>",
    "<|im_end|>",
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
)


def train_sentencepiece(
    text_files: Sequence[Path],
    output: Path,
    vocab_size: int,
    *,
    model_type: str = "bpe",
    control_symbols: Iterable[str] = DEFAULT_CONTROL_SYMBOLS,
) -> Path:
    """Train a SentencePiece model; returns the path of the written ``.model`` file.

    Identity normalisation and byte fallback keep every character (newlines, control characters,
    non-ASCII) encodable, so chat prompt tokens like ``"\\n"`` always survive tokenization.
    """
    lines: list[str] = []
    for path in text_files:
        try:
            lines.extend(line for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip())
        except (OSError, UnicodeDecodeError) as exc:
            raise SftError(f"{path}: cannot read text ({exc})") from None
    if not lines:
        raise SftError("no text to train a tokenizer on: the input files are empty")
    output = Path(output)
    if output.suffix != ".model":
        raise SftError(f"{output}: a SentencePiece model file must end in .model")
    output.parent.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.Train(
            sentence_iterator=iter(lines),
            model_writer=model,
            vocab_size=vocab_size,
            model_type=model_type,
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,
            byte_fallback=True,
            split_digits=True,
            hard_vocab_limit=False,
            control_symbols=list(control_symbols),
            user_defined_symbols=["\n"],
            pad_id=3,
            bos_id=1,
            eos_id=2,
            unk_id=0,
            num_threads=2,
            minloglevel=2,
        )
    except RuntimeError as exc:
        raise SftError(f"SentencePiece training failed: {exc}") from None
    tmp = output.with_suffix(".model.tmp")
    tmp.write_bytes(model.getvalue())
    tmp.replace(output)
    return output
