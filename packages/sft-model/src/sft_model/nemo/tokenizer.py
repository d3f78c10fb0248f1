"""Tokenizer files inside a ``.nemo``: embedding them as artifacts and getting them back out.

Artifacts are stored as ``<32 hex>_<original name>`` and referenced from the config as
``nemo:<32 hex>_<original name>``, as the reference does for ``tokenizer.model``. Hugging Face
tokenizers are embedded too (``tokenizer.json`` as ``model``; ``tokenizer_config.json``,
``special_tokens_map.json``, ``chat_template.jinja``... as ``extra_files``) — the reference left them
out and fetched them from a hub at run time. On the way out files get their original names back,
so the directory reads like the tokenizer directory it came from.
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from sft_model.config import ModelConfig, TokenizerConfig
from sft_model.errors import ModelError, NemoArchiveError
from sft_model.nemo import archive

_ARTIFACT = re.compile(r"^(?:nemo:)?([0-9a-f]{32})_(.+)$")
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
    refs = []
    for src in tokenizer.files:
        name = f"{uuid.uuid4().hex}_{src.name}"
        shutil.copyfile(src, staging / name)
        refs.append(f"nemo:{name}")
    base = tokenizer.config
    return TokenizerConfig(library=tokenizer.library, type=base.type, model=refs[0], vocab_file=None, merge_file=None,
                           delimiter=base.delimiter, sentencepiece_legacy=base.sentencepiece_legacy,
                           extra_files=refs[1:], extra=dict(base.extra))


def original_name(ref: str) -> str:
    match = _ARTIFACT.match(ref)
    return match.group(2) if match else ref.removeprefix("nemo:")


def collect(cfg: TokenizerConfig, source_dir: Path, target: Path, origin: str | Path) -> TokenizerFiles | None:
    """Move the referenced artifacts from an extracted archive into ``target`` under their original names."""
    refs = cfg.file_refs()
    if not refs:
        return None
    target.mkdir(parents=True, exist_ok=True)
    names = [original_name(r) for r in refs]
    files = []
    for ref, name in zip(refs, names, strict=True):
        src = source_dir / ref.removeprefix("nemo:")
        if not src.is_file():
            raise NemoArchiveError(f"{origin}: tokenizer file {ref} is referenced but not in the archive")
        dest = target / (name if names.count(name) == 1 else ref.removeprefix("nemo:"))
        shutil.copyfile(src, dest)
        files.append(dest)
    library = cfg.library if cfg.library in ("sentencepiece", "huggingface") else "sentencepiece"
    return TokenizerFiles(library, files, cfg)


def read_config(path: Path) -> ModelConfig:
    """``model_config.yaml`` of a ``.nemo`` file or extracted directory, extracting nothing else."""
    path = Path(path)
    if path.is_dir():
        file = path / "model_config.yaml"
        if not file.is_file():
            raise NemoArchiveError(f"{path}: no model_config.yaml (not an extracted .nemo directory)")
        text = file.read_text(encoding="utf-8")
    else:
        data = archive.read_member(path, "model_config.yaml")
        if data is None:
            raise NemoArchiveError(f"{path}: no model_config.yaml in the archive (not a .nemo file?)")
        text = data.decode("utf-8", errors="replace")
    try:
        return ModelConfig.from_yaml(text)
    except yaml.YAMLError as exc:  # pragma: no cover - from_yaml already turns these into ModelConfigError
        raise NemoArchiveError(f"{path}: model_config.yaml is not valid YAML ({exc})") from None


def extract_tokenizer(nemo: str | Path, target: str | Path) -> TokenizerFiles:
    """Extract only a ``.nemo``'s tokenizer files (safely) into ``target``, under their original names."""
    nemo, target = Path(nemo), Path(target)
    cfg = read_config(nemo)
    wanted = {r.removeprefix("nemo:") for r in cfg.tokenizer.file_refs()}
    if not wanted:
        raise NemoArchiveError(f"{nemo}: the model config references no embedded tokenizer files")
    if nemo.is_dir():
        source = nemo
    else:
        source = target / ".artifacts"
        archive.extract(nemo, source, select=lambda name: name in wanted)
    try:
        files = collect(cfg.tokenizer, source, target, nemo)
    finally:
        if source != nemo:
            shutil.rmtree(source, ignore_errors=True)
    assert files is not None
    return files
