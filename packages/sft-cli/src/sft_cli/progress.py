"""Progress bars with ETA for long work (rich), on stderr so stdout stays parseable."""

from __future__ import annotations

from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

stderr = Console(stderr=True)


@contextmanager
def progress_bar(description: str, total: int | None = None):
    """Yields ``update(done, total)``; the bar shows count, elapsed time and ETA.

    The bar appears at the first update, so work refused before it starts shows only the error.
    """
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())
    shown: list = []

    def update(done: int, new_total: int | None = None) -> None:
        if not shown:
            bar = Progress(*columns, console=stderr, transient=False)
            bar.start()
            shown[:] = [bar, bar.add_task(description, total=total)]
        bar, task = shown
        bar.update(task, completed=done, total=new_total if new_total is not None else total)

    try:
        yield update
    finally:
        if shown:
            shown[0].stop()
