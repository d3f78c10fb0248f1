"""Errors raised for bad user input.

Every error here is meant to be shown to a person as one line; the CLI prints ``str(error)``
and exits 1, so messages must name what is wrong and where.
"""

from __future__ import annotations

from dataclasses import dataclass

from sft_core.errors import PluginError, SftError

__all__ = ["ConfigError", "InvalidRecordsError", "PluginError", "RecordError", "RecordProblem", "SftError"]


class RecordError(SftError):
    """One record is invalid; raised by format parsers without location (the reader adds it)."""


class ConfigError(SftError):
    """The settings or the tokenizer cannot work, whatever the data: reported without a record location."""


@dataclass(frozen=True)
class RecordProblem:
    """A bad record, located in its file."""

    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


class InvalidRecordsError(SftError):
    """Some records are invalid and the caller did not ask to skip them."""

    def __init__(self, problems: list[RecordProblem], total: int, shown: int = 10):
        self.problems = problems
        self.total = total
        lines = [str(p) for p in problems[:shown]]
        more = f" (showing the first {shown})" if total > shown else ""
        summary = f"{total} invalid record{'s' if total != 1 else ''}{more}; pass --skip-invalid to skip them"
        super().__init__("\n".join([*lines, summary]))
