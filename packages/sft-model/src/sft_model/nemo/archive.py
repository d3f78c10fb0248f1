"""Reading and writing ``.nemo`` tar archives safely.

A ``.nemo`` is a plain tar (the reference writes ``"w:"`` with arcname ``.``; gzip tars are read
too). Reading never writes outside the target directory: every member is checked before anything
is extracted — absolute paths, ``..``, symlinks, hard links, devices and FIFOs are refused — and
extraction also runs under tarfile's ``data`` filter. A truncated or corrupt archive becomes one
``NemoArchiveError`` line.
"""

from __future__ import annotations

import os
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from sft_model.errors import NemoArchiveError

_READ_ERRORS = (tarfile.TarError, EOFError, zlib.error, OSError)


def _why(exc: BaseException) -> str:
    """One line: tarfile's "open" error lists every compression it tried on separate lines."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0].rstrip(':')}" if text else type(exc).__name__


def member_name(name: str) -> str:
    """The member's path without the reference's leading ``./``."""
    while name.startswith("./"):
        name = name[2:]
    return "" if name == "." else name


def _check_member(archive: Path, member: tarfile.TarInfo) -> None:
    name = member.name
    parts = PurePosixPath(name).parts
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or PurePosixPath(name).is_absolute():
        raise NemoArchiveError(f"{archive}: refusing member with an absolute path: {name!r}")
    if ".." in parts or ".." in name.split("\\"):
        raise NemoArchiveError(f"{archive}: refusing member that leaves the archive directory: {name!r}")
    if member.issym() or member.islnk():
        raise NemoArchiveError(f"{archive}: refusing link member {name!r} -> {member.linkname!r}")
    if not (member.isfile() or member.isdir()):
        raise NemoArchiveError(f"{archive}: refusing special member {name!r} (device, FIFO or unknown type)")


def open_archive(path: Path) -> tarfile.TarFile:
    """Open a plain or gzip tar; any failure is one line."""
    try:
        return tarfile.open(path, "r:*")
    except _READ_ERRORS as exc:
        raise NemoArchiveError(f"{path}: not a readable .nemo archive (not a tar or gzip tar; {_why(exc)})") from None


def list_members(path: Path) -> list[tarfile.TarInfo]:
    """Every member, validated; reading the whole index also detects truncation early."""
    with open_archive(path) as tar:
        try:
            members = tar.getmembers()
        except _READ_ERRORS as exc:
            raise NemoArchiveError(f"{path}: truncated or corrupt .nemo archive ({_why(exc)})") from None
    for member in members:
        _check_member(path, member)
    return members


def extract(path: Path, target: Path, select: Callable[[str], bool] = lambda name: True) -> list[str]:
    """Extract the members whose (``./``-less) names ``select`` accepts into ``target``.

    All members are validated first, so a hostile archive writes nothing at all. Returns the
    extracted names.
    """
    path, target = Path(path), Path(target)
    members = [m for m in list_members(path) if member_name(m.name) and select(member_name(m.name))]
    target.mkdir(parents=True, exist_ok=True)
    with open_archive(path) as tar:
        try:
            tar.extractall(target, members=members, filter="data")
        except tarfile.FilterError as exc:  # defence in depth: the checks above should have caught it
            raise NemoArchiveError(f"{path}: refusing unsafe member ({exc})") from None
        except _READ_ERRORS as exc:
            raise NemoArchiveError(f"{path}: truncated or corrupt .nemo archive ({_why(exc)})") from None
    return [member_name(m.name) for m in members]


def read_member(path: Path, name: str) -> bytes | None:
    """The bytes of one regular member (None when absent), without extracting anything."""
    for member in list_members(path):
        if member_name(member.name) == name and member.isfile():
            with open_archive(path) as tar:
                try:
                    handle = tar.extractfile(member)
                    return handle.read() if handle else None
                except _READ_ERRORS as exc:
                    raise NemoArchiveError(f"{path}: truncated or corrupt .nemo archive ({_why(exc)})") from None
    return None


def write(source_dir: Path, out_path: Path) -> None:
    """Pack ``source_dir`` as an uncompressed tar (arcname ``.``, like the reference), atomically."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.partial-{os.getpid()}")
    try:
        with tarfile.open(tmp, "w:") as tar:
            tar.add(source_dir, arcname=".")
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
