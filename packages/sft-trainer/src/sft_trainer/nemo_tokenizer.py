"""A tokenizer loader for ``.nemo`` files: ``--tokenizer model.nemo`` uses the embedded tokenizer.

It lives in sft_trainer because it needs both hosts: sft_model extracts the tokenizer files from
the archive (safely, nothing else) and sft_data's own loaders read them.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from sft_core import SftError, hookimpl
from sft_data.tokenizers.huggingface import HuggingFaceTokenizer
from sft_data.tokenizers.sentencepiece import SentencePieceTokenizer
from sft_model.errors import ModelError


class NemoTokenizerLoader:
    name = "nemo"

    def can_load(self, path: Path) -> bool:
        path = Path(path)
        if path.is_dir():
            return (path / "model_config.yaml").is_file()
        return path.is_file() and path.suffix == ".nemo"

    def load(self, path: Path):
        from sft_model.nemo.tokenizer import extract_tokenizer

        workdir = tempfile.TemporaryDirectory(prefix="sft-nemo-tokenizer-")
        try:
            files = extract_tokenizer(path, workdir.name)
        except ModelError as exc:
            workdir.cleanup()
            raise SftError(str(exc)) from None
        tokenizer = (SentencePieceTokenizer(files.path) if files.library == "sentencepiece"
                     else HuggingFaceTokenizer(files.path))
        tokenizer._nemo_workdir = workdir  # the extracted files live as long as the tokenizer
        return tokenizer


@hookimpl
def sft_register_tokenizers(register):
    register(NemoTokenizerLoader())
