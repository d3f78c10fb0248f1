"""``nemo:`` artifact references: what a config may point at inside its archive.

A ``.nemo``'s config names its embedded files as ``nemo:<name>``; the reference writes
``nemo:<32 hex>_<original name>``. The config is as untrusted as the rest of the archive, so a
reference is accepted only when ``<name>`` is a plain file name (no ``/``, no ``\\``, not ``.`` or
``..``, no NUL): it then names a top-level member and nothing else. The name a file gets back on
the way out (``<original name>``) passes the same test, and the destination is resolved and
checked to lie inside the target directory, so no reference can read or write elsewhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from sft_model.config import TokenizerConfig
from sft_model.errors import NemoArchiveError

PREFIX = "nemo:"
_ARTIFACT = re.compile(r"^([0-9a-f]{32})_(.+)$", re.DOTALL)


def _plain(name: str) -> bool:
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\0")


@dataclass(frozen=True)
class Artifact:
    """One reference, checked: the member it names and the file name it gets back."""

    ref: str
    member: str
    """The top-level archive member (or file of an extracted directory)."""
    original: str
    """The file name it had before it was embedded (``member`` without the ``<hex>_`` prefix)."""


def artifact(ref: str, origin: str | Path) -> Artifact:
    """Check one ``nemo:`` reference; anything but a plain file name is refused with one line."""
    member = ref.removeprefix(PREFIX)
    if not _plain(member):
        raise NemoArchiveError(f"{origin}: refusing artifact reference {ref!r}: it must name a file inside the "
                               "archive (no '/', '\\', '..' or absolute path)")
    match = _ARTIFACT.match(member)
    original = match.group(2) if match else member
    if not _plain(original):
        raise NemoArchiveError(f"{origin}: refusing artifact reference {ref!r}: {original!r} is not a file name")
    return Artifact(ref, member, original)


def tokenizer_artifacts(cfg: TokenizerConfig, origin: str | Path) -> list[tuple[Artifact, str]]:
    """Every embedded tokenizer file, checked, with the plain name it is written under.

    Files keep their original names; two files with the same original name keep their member names.
    """
    found = [artifact(ref, origin) for ref in cfg.file_refs()]
    originals = [a.original for a in found]
    return [(a, a.original if originals.count(a.original) == 1 else a.member) for a in found]


def inside(target: Path, name: str, origin: str | Path) -> Path:
    """``target / name`` after checking it resolves inside ``target`` (defence in depth for plain names)."""
    root = Path(target).resolve()
    dest = (root / name).resolve()
    if dest.parent != root:
        raise NemoArchiveError(f"{origin}: refusing to write {name!r} outside {target}")
    return dest
