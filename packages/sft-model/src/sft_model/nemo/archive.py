"""Reading and writing ``.nemo`` tar archives safely.

A ``.nemo`` is a plain tar (the reference writes ``"w:"`` with arcname ``.``; gzip tars are read
too). ``Archive`` reads the index once and refuses, before anything is written: absolute paths,
``..``, links, devices, FIFOs, sparse and duplicate members, more than ``max_members`` members
(counted while the index is read, so 100,000 junk headers stop at the cap) and a member whose header
declares more than the caller's cap for that name. ``extract`` then writes only the members it is
asked for, each to a plain file inside the target, after checking every declared size against its
limit and the total against the free disk space; it copies in chunks and never reads past a
member's declared size, so a gzip bomb cannot yield more than was checked. A truncated or corrupt
archive is one ``NemoArchiveError`` line.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath

from sft_model.errors import NemoArchiveError

MAX_MEMBERS = 10_000
"""A checkpoint written by thousands of ranks still has far fewer members."""
CHUNK = 1 << 20
_READ_ERRORS = (tarfile.TarError, EOFError, zlib.error, OSError)


def _why(exc: BaseException) -> str:
    """One line: tarfile's "open" error lists every compression it tried on separate lines."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0].rstrip(':')}" if text else type(exc).__name__


def member_name(name: str) -> str:
    """The member's path without the reference's leading ``./``."""
    while name.startswith("./"):
        name = name[2:]
    return "" if name == "." else name.rstrip("/")


def _check_member(archive: Path, member: tarfile.TarInfo) -> None:
    name = member.name
    parts = PurePosixPath(name).parts
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or PurePosixPath(name).is_absolute():
        raise NemoArchiveError(f"{archive}: refusing member with an absolute path: {name!r}")
    if ".." in parts or ".." in name.split("\\") or "\0" in name:
        raise NemoArchiveError(f"{archive}: refusing member that leaves the archive directory: {name!r}")
    if member.issym() or member.islnk():
        raise NemoArchiveError(f"{archive}: refusing link member {name!r} -> {member.linkname!r}")
    if not (member.isfile() or member.isdir()) or member.issparse():
        raise NemoArchiveError(f"{archive}: refusing special member {name!r} (device, FIFO, sparse or unknown type)")


class Archive:
    """An open, validated ``.nemo``: ``members`` maps (``./``-less) names to their headers.

    ``cap(name)`` is the most bytes a member of that name may declare (None: no cap yet); it is
    checked as each header is read, before the scan moves past the member's data.
    """

    def __init__(self, path: str | Path, *, max_members: int = MAX_MEMBERS,
                 cap: Callable[[str], int | None] = lambda name: None):
        self.path = Path(path)
        try:
            self.tar = tarfile.open(self.path, "r:*")  # noqa: SIM115 - closed by __exit__
        except _READ_ERRORS as exc:
            raise NemoArchiveError(f"{self.path}: not a readable .nemo archive "
                                   f"(not a tar or gzip tar; {_why(exc)})") from None
        try:
            self.members = self._scan(max_members, cap)
        except BaseException:
            self.tar.close()
            raise

    def _scan(self, max_members: int, cap: Callable[[str], int | None]) -> dict[str, tarfile.TarInfo]:
        members: dict[str, tarfile.TarInfo] = {}
        # a plain tar's members must fit in the file; a compressed one's are bounded when extracted
        plain_size = self.path.stat().st_size if isinstance(self.tar.fileobj, io.BufferedReader) else None
        count, last = 0, None
        while True:
            try:
                member = self.tar.next()
            except _READ_ERRORS as exc:
                declared = f"member {last.name!r} declares {last.size} bytes; " if last is not None else ""
                raise NemoArchiveError(f"{self.path}: truncated or corrupt .nemo archive ({declared}{_why(exc)})") from None
            if member is None:
                return members
            count += 1
            if count > max_members:
                raise NemoArchiveError(f"{self.path}: refusing archive with more than {max_members} members")
            _check_member(self.path, member)
            name = member_name(member.name)
            limit = cap(name) if member.isfile() else None
            if limit is not None and member.size > limit:
                raise NemoArchiveError(f"{self.path}: refusing member {name!r}: it declares {member.size} bytes, "
                                       f"more than the {limit} allowed")
            if plain_size is not None and member.offset_data + member.size > plain_size:
                raise NemoArchiveError(f"{self.path}: refusing member {name!r}: it declares {member.size} bytes, "
                                       f"more than the archive holds ({plain_size} bytes)")
            if name in members and not (member.isdir() and members[name].isdir()):
                raise NemoArchiveError(f"{self.path}: refusing archive with two members named {name!r}")
            if name:
                members[name] = member
            last = member

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc) -> None:
        self.tar.close()

    def file(self, name: str) -> tarfile.TarInfo | None:
        member = self.members.get(name)
        return member if member is not None and member.isfile() else None

    def read(self, name: str, limit: int) -> bytes | None:
        """The bytes of one regular member (None when absent), at most ``limit`` of them."""
        member = self.file(name)
        if member is None:
            return None
        self._check_sizes({name: limit})
        try:
            handle = self.tar.extractfile(member)
            return handle.read(member.size) if handle else None
        except _READ_ERRORS as exc:
            raise NemoArchiveError(f"{self.path}: truncated or corrupt .nemo archive ({_why(exc)})") from None

    def _check_sizes(self, limits: Mapping[str, int]) -> int:
        total = 0
        for name, limit in limits.items():
            size = self.members[name].size
            if size > limit:
                raise NemoArchiveError(f"{self.path}: refusing member {name!r}: it declares {size} bytes, "
                                       f"more than the {limit} allowed")
            total += size
        return total

    def extract(self, target: str | Path, plan: Mapping[str, tuple[str, int]]) -> None:
        """Write each planned member ``name -> (relative destination, byte limit)`` under ``target``.

        Every limit and the free disk space are checked before the first byte is written.
        """
        target = Path(target)
        target.mkdir(parents=True, exist_ok=True)
        root = target.resolve()
        missing = [n for n in plan if self.file(n) is None]
        if missing:
            raise NemoArchiveError(f"{self.path}: member {missing[0]!r} is needed but not in the archive")
        total = self._check_sizes({name: limit for name, (_, limit) in plan.items()})
        free = shutil.disk_usage(root).free
        if total > free:
            raise NemoArchiveError(f"{self.path}: refusing to extract {total} bytes into {target}: "
                                   f"only {free} bytes are free there")
        dests = {}
        for name, (rel, _) in plan.items():
            dest = (root / rel).resolve()  # a symlink already in the target counts as what it points at
            if not dest.is_relative_to(root) or dest == root or dest in dests.values():
                raise NemoArchiveError(f"{self.path}: refusing to write {rel!r} outside {target} or twice")
            dests[name] = dest
        for name in sorted(plan, key=lambda n: self.members[n].offset_data):  # forward only: gzip never rewinds
            self._copy(self.members[name], dests[name])

    def _copy(self, member: tarfile.TarInfo, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            source = self.tar.extractfile(member)
            with source, open(dest, "wb") as out:
                left = member.size
                while left > 0:
                    chunk = source.read(min(CHUNK, left))
                    if not chunk:
                        raise EOFError(f"member {member_name(member.name)!r} ends before its declared size")
                    out.write(chunk)
                    left -= len(chunk)
        except _READ_ERRORS as exc:
            raise NemoArchiveError(f"{self.path}: truncated or corrupt .nemo archive ({_why(exc)})") from None


def extract(path: str | Path, target: str | Path, select: Callable[[str], bool] = lambda name: True, *,
            max_member_bytes: int = 1 << 40, max_members: int = MAX_MEMBERS) -> list[str]:
    """Extract every regular member whose name ``select`` accepts into ``target`` (the archive's own layout).

    For looking inside an archive (tests, tools); reading a model extracts through ``unpack``, which
    extracts only what the model needs, with limits from its metadata.
    """
    with Archive(path, max_members=max_members) as archive:
        names = [n for n, m in archive.members.items() if m.isfile() and select(n)]
        archive.extract(target, {n: (n, max_member_bytes) for n in names})
    return names


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
