"""Tokenizer files inside a ``.nemo``: embedding them as artifacts and getting them back out.

Artifacts are stored as ``<32 hex>_<original name>`` and referenced from the config as
``nemo:<32 hex>_<original name>``, as the reference does for ``tokenizer.model``. Hugging Face
tokenizers are embedded too (``tokenizer.json`` as ``model``; ``tokenizer_config.json``,
``special_tokens_map.json``, ``chat_template.jinja``... as ``extra_files``) — the reference left them
out and fetched them from a hub at run time. On the way out files get their original names back,
so the directory reads like the tokenizer directory it came from; every reference is checked by
``refs`` first (a plain file name inside the archive, written inside the target, or refused).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sft_model.config import TokenizerConfig
from sft_model.errors import ModelError, NemoArchiveError
from sft_model.nemo import refs, unpack

HF_SIDE_FILES = ("tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "tokenizer.model",
                 "generation_config.json", "added_tokens.json", "vocab.json", "merges.txt")


@dataclass
class TokenizerFiles:
    """A tokenizer as files on disk: what a ``.nemo`` carries and what a tokenizer loader reads."""

    library: str
    """``sentencepiece`` or ``huggingface``."""
    files: list[Path]
    """The main file first (``*.model`` or ``tokenizer.json``), then side files."""
    config: TokenizerConfig = field(default_factory=TokenizerConfig)
    """The config section these files came with (or will be written to)."""

    @property
    def path(self) -> Path:
        """What to hand to a tokenizer loader: the ``.model`` file, or the directory holding ``tokenizer.json``."""
        return self.files[0] if self.library == "sentencepiece" else self.files[0].parent

    @classmethod
    def from_path(cls, path: str | Path, extra: Sequence[str | Path] = ()) -> TokenizerFiles:
        """A ``.model`` file, a ``tokenizer.json`` or a directory holding either (HF side files join it)."""
        path = Path(path)
        if path.is_dir():
            main = next((path / n for n in ("tokenizer.json", "tokenizer.model") if (path / n).is_file()), None)
            if main is None:
                raise ModelError(f"{path}: no tokenizer.json or tokenizer.model in this directory")
            path = main
        if not path.is_file():
            raise ModelError(f"{path}: tokenizer file not found")
        library = "huggingface" if path.suffix == ".json" else "sentencepiece"
        side = [path.parent / n for n in HF_SIDE_FILES if (path.parent / n).is_file() and path.parent / n != path]
        if library == "sentencepiece":  # an HF-style directory with only tokenizer.model: keep the chat template
            side = [p for p in side if p.name in ("tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")]
        return cls(library, [path, *side, *(Path(p) for p in extra)])


def embed(tokenizer: TokenizerFiles, staging: Path) -> TokenizerConfig:
    """Copy the files into the staging directory as artifacts; the config section that references them."""
    names = []
    for src in tokenizer.files:
        name = f"{uuid.uuid4().hex}_{src.name}"
        shutil.copyfile(src, staging / name)
        names.append(f"{refs.PREFIX}{name}")
    base = tokenizer.config
    return TokenizerConfig(library=tokenizer.library, type=base.type, model=names[0], vocab_file=None, merge_file=None,
                           delimiter=base.delimiter, sentencepiece_legacy=base.sentencepiece_legacy,
                           extra_files=names[1:], extra=dict(base.extra))


def unpacked(cfg: TokenizerConfig, directory: Path) -> TokenizerFiles | None:
    """The tokenizer files ``unpack`` (or ``collect``) wrote into ``directory``; None when none are embedded."""
    files = [Path(directory) / name for _, name in refs.tokenizer_artifacts(cfg, directory)]
    if not files:
        return None
    library = cfg.library if cfg.library in ("sentencepiece", "huggingface") else "sentencepiece"
    return TokenizerFiles(library, files, cfg)


def collect(cfg: TokenizerConfig, source_dir: Path, target: Path, origin: str | Path) -> TokenizerFiles | None:
    """Copy the referenced artifacts of an extracted ``.nemo`` directory into ``target`` under their original names."""
    found = refs.tokenizer_artifacts(cfg, origin)
    if not found:
        return None
    target.mkdir(parents=True, exist_ok=True)
    root = Path(source_dir).resolve()
    for artifact, name in found:
        src = Path(source_dir) / artifact.member
        if src.is_symlink() or not src.is_file() or src.resolve().parent != root:
            raise NemoArchiveError(f"{origin}: tokenizer file {artifact.ref} is referenced but not a file in the directory")
        shutil.copyfile(src, refs.inside(target, name, origin))
    return unpacked(cfg, Path(target))


def extract_tokenizer(nemo: str | Path, target: str | Path, *, limits: unpack.Limits = unpack.LIMITS) -> TokenizerFiles:
    """Extract only a ``.nemo``'s tokenizer files (safely) into ``target``, under their original names."""
    nemo, target = Path(nemo), Path(target)
    if nemo.is_dir():
        cfg = unpack.read_config(nemo, limits)
        files = collect(cfg.tokenizer, nemo, target, nemo)
    else:
        cfg = unpack.unpack(nemo, None, target, limits=limits)
        files = unpacked(cfg.tokenizer, target)
    if files is None:
        raise NemoArchiveError(f"{nemo}: the model config references no embedded tokenizer files")
    return files
