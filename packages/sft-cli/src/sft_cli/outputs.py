"""Command outputs: never replaced unless asked (``--overwrite``), never left half-written.

``check_free(path, overwrite)`` fails fast, before a command loads a model or tokenizes anything.
``replacing(path, overwrite)`` yields a temporary sibling (``.NAME.partial-PID``, keeping NAME's
suffix for writers that go by it) for the command to write; it is swapped in only when the block
completes. A file is swapped with one ``os.replace``. A directory cannot be replaced in one step:
the old one is renamed aside (``.NAME.old-PID``), the new one renamed into place, then the old one
removed, so a process killed midway leaves the old output either in place or under that name.
On any error the old output is untouched and the partial one removed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from sft_core import SftError


class OutputExistsError(SftError):
    """The output exists and ``--overwrite`` was not given."""


def overwrite_option(name: str = "--output"):
    """The ``--overwrite`` flag, its help naming the output it concerns."""
    return click.option("--overwrite", is_flag=True,
                        help=f"Replace {name} if it exists (the new one is written beside it and swapped "
                             "in only when complete).")


def _occupied(path: Path) -> bool:
    # an empty directory holds nothing to lose (e.g. made beforehand with mkdir)
    if path.is_dir() and not path.is_symlink():
        return any(path.iterdir())
    return path.exists() or path.is_symlink()


def check_free(path: str | os.PathLike, overwrite: bool, *,
               replaceable: Callable[[Path], bool] | None = None, what: str = "") -> None:
    """Raise unless ``path`` may be written: absent, an empty directory, or ``overwrite`` given.

    With ``replaceable``, a non-empty directory is replaced only if it passes (``what`` names what it
    should be), so ``--overwrite`` never deletes an unrelated directory given by mistake.
    """
    path = Path(path)
    if not _occupied(path):
        return
    if not overwrite:
        raise OutputExistsError(f"{path} already exists; pass --overwrite to replace it")
    if replaceable is not None and path.is_dir() and not replaceable(path):
        raise SftError(f"{path} exists and is not {what}; refusing to replace it")


def sibling(path: Path, tag: str) -> Path:
    """``.STEM.TAG-PID.SUFFIX`` beside ``path``: hidden, recognisable, same suffix."""
    return path.with_name(f".{path.stem}.{tag}-{os.getpid()}{path.suffix}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def _swap(new: Path, target: Path) -> None:
    if not (target.is_dir() and not target.is_symlink()):
        os.replace(new, target)  # atomic for files (and for a directory taking an absent name)
        return
    old = sibling(target, "old")
    _remove(old)
    os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def replacing(path: str | os.PathLike, overwrite: bool, *,
              replaceable: Callable[[Path], bool] | None = None, what: str = "") -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new content to; swap it in when the block completes.

    Checks ``check_free`` first (enter the block before any expensive work).
    """
    check_free(path, overwrite, replaceable=replaceable, what=what)
    path = Path(os.path.abspath(path))  # "." or "x/.." have no name to put a sibling beside
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = sibling(path, "partial")
    _remove(tmp)  # left by an earlier process that had the same id and was killed
    try:
        yield tmp
        if not (tmp.exists() or tmp.is_symlink()):
            raise SftError(f"{path}: nothing was written")
        _swap(tmp, path)
    finally:
        _remove(tmp)
