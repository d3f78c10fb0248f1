"""Failed writes (a full disk, a quota, a size limit, permissions) as one line naming the file.

torch's serializer hides the OS error: a full disk surfaces as ``RuntimeError: [enforce fail at
inline_container.cc:...] . unexpected pos ...`` or ``PytorchStreamWriter failed writing file``, with
no path and no errno. ``write_problem`` names the file, the cause when the OS gave one, and the
free space left where it did not, so the user can tell a full disk from a bug.
"""

from __future__ import annotations

import errno
import os
import re
import resource
import shutil
from pathlib import Path

from sft_core import SftError

_CAUSES = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EFBIG: "the file is larger than the file-size limit (ulimit -f)",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "the file system is read-only",
}
_TORCH_WRITE = re.compile(r"inline_container\.cc|PytorchStreamWriter|unexpected pos|file write failed")


class WriteFailed(SftError):
    """A file could not be written; the message names it and the cause."""


def write_problem(exc: BaseException, path: Path) -> str | None:
    """``"<path>: <cause>"`` for a failed write of ``path``, or None when ``exc`` is not one."""
    if isinstance(exc, OSError):
        where = exc.filename or path
        cause = _CAUSES.get(exc.errno, exc.strerror or str(exc) or type(exc).__name__)
        return f"{where}: {cause}"
    if isinstance(exc, RuntimeError) and _TORCH_WRITE.search(str(exc)):
        first = str(exc).strip().splitlines()[0][:160]
        return (f"{path}: the write failed, the disk may be full ({free_space(path)} free there{size_limit()}; "
                f"torch: {first})")
    return None


def size_limit() -> str:
    """", file-size limit N bytes" when ``ulimit -f`` is set: a write can fail with the disk half empty."""
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return "" if soft == resource.RLIM_INFINITY else f", file-size limit {soft} bytes"


def free_space(path: Path) -> str:
    """Free bytes on the file system holding ``path`` (its nearest existing parent), readable."""
    for candidate in (Path(path), *Path(path).parents):
        if candidate.exists():
            try:
                free = float(shutil.disk_usage(candidate).free)
            except OSError:
                return "unknown space"
            for unit in ("bytes", "KiB", "MiB", "GiB"):
                if free < 1024 or unit == "GiB":
                    return f"{free:.0f} {unit}" if unit == "bytes" else f"{free:.1f} {unit}"
                free /= 1024
    return "unknown space"


def as_write_failure(exc: BaseException, path: Path) -> BaseException:
    """``exc`` as a ``WriteFailed`` ("<path>: <cause>") when it is a failed write; else ``exc`` itself."""
    problem = write_problem(exc, path)
    return WriteFailed(problem) if problem else exc


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``path`` through a ``.partial`` sibling and a rename, so it is old or new, never half;
    a failure is a ``WriteFailed`` naming the file, and leaves no ``.partial`` behind."""
    tmp = path.with_name(path.name + ".partial")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise as_write_failure(exc, path) from None
    finally:
        tmp.unlink(missing_ok=True)
