"""Building chunks in worker processes, results in input order, a bounded number of chunks in flight.

Workers are started with ``spawn``: a fresh interpreter holds no tokenizer thread pool from the
parent (a forked child of a process whose Rust tokenizer already ran threads must disable them)
and no torch state when ``sft train`` prepares on the fly. Each worker receives the run's settings,
tokenizer and registries once, pickled, and builds one chunk at a time; the parent keeps at most
``IN_FLIGHT_PER_WORKER`` chunks per worker submitted, so reading never runs ahead of building and
memory stays bounded whatever the input's size. Results come back in submission order, so the
output does not depend on how many workers built it.

Workers do not re-run the parent's main module (``spawn`` would, to find functions defined there):
everything they run is in sft_data, their startup stays short, and a script that calls
``prepare(workers=2)`` without an ``if __name__ == "__main__"`` guard does not start workers of
its own from inside a worker. Plugin objects defined in a main script therefore cannot reach a
worker; that is reported in one line, suggesting one worker.

Every worker, and the preparing process itself with one worker, encodes on one thread
(``one_thread``): ``--workers N`` keeps N cores busy, no more; a tokenizer's own thread pool in each
worker on top would only contend for the same cores.
"""

from __future__ import annotations

import copy
import io
import multiprocessing
import os
import pickle
import signal
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager, redirect_stderr

from sft_data.building import ChunkBuilder, ChunkResult
from sft_data.config import DataConfig
from sft_data.errors import SftError
from sft_data.inputs import Chunk
from sft_data.registries import DataRegistries
from sft_data.tokenizers.base import Tokenizer

IN_FLIGHT_PER_WORKER = 2

Job = tuple[Chunk, str | None]

_builder: ChunkBuilder | None = None
_start_error: str | None = None


def default_workers() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def build_chunks(jobs: Iterable[Job], config: DataConfig, tokenizer: Tokenizer, registries: DataRegistries,
                 workers: int = 1) -> Iterator[ChunkResult]:
    """Each job's ``ChunkResult``, in order; ``workers`` > 1 builds them in that many processes."""
    if workers <= 1:
        builder = ChunkBuilder(config, one_thread(tokenizer), registries)
        for chunk, format_name in jobs:
            yield builder(chunk, format_name)
        return
    try:
        payload = pickle.dumps((config, tokenizer, registries))
    except Exception as exc:  # whatever a plugin object raises, the advice is the same
        raise SftError(f"--workers {workers} sends the tokenizer, settings and plugins to worker processes, "
                       f"but they cannot be pickled ({type(exc).__name__}: {exc}); use --workers 1") from None
    with ProcessPoolExecutor(workers, mp_context=_Context(), initializer=_start, initargs=(payload,)) as pool:
        pending: deque[Future] = deque()
        shown: set[str] = set()
        try:
            for chunk, format_name in jobs:
                pending.append(pool.submit(_build, chunk, format_name))
                if len(pending) >= workers * IN_FLIGHT_PER_WORKER:
                    yield _result(pending.popleft(), shown)
            while pending:
                yield _result(pending.popleft(), shown)
        finally:
            for future in pending:
                future.cancel()


class _Process(multiprocessing.context.SpawnProcess):
    def start(self) -> None:
        with _main_module_hidden():
            super().start()


class _Context(multiprocessing.context.SpawnContext):
    """``spawn``, without importing the parent's main module in the child (see the module docstring)."""

    Process = _Process


@contextmanager
def _main_module_hidden() -> Iterator[None]:
    """While processes start: a main module without ``__file__`` / ``__spec__``, which spawn then
    does not import in the child (as for an interactive session)."""
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved = {key: main.__dict__[key] for key in ("__file__", "__spec__") if key in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


def one_thread(tokenizer: Tokenizer) -> Tokenizer:
    """A copy of ``tokenizer`` that encodes on one thread, when it has a ``threads`` setting: each
    worker is one core's worth of work (``--workers 1`` included)."""
    if not hasattr(tokenizer, "threads"):
        return tokenizer
    single = copy.copy(tokenizer)
    single.threads = 1
    return single


def _result(future: Future, shown: set[str]) -> ChunkResult:
    try:
        result = future.result()
    except BrokenProcessPool as exc:
        raise SftError(f"a data worker process died ({exc}); run again with --workers 1 to see why") from None
    for line in result.stderr.splitlines():  # each worker warns once: show each warning once
        if line not in shown:
            shown.add(line)
            print(line, file=sys.stderr)
    return result


def _start(payload: bytes) -> None:
    global _builder, _start_error
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the pool
    try:
        config, tokenizer, registries = pickle.loads(payload)
        _builder = ChunkBuilder(config, one_thread(tokenizer), registries)
    except Exception as exc:  # reported by the first chunk, as one line
        _start_error = f"{type(exc).__name__}: {exc}"


def _build(chunk: Chunk, format_name: str | None) -> ChunkResult:
    if _builder is None:
        raise SftError(f"a data worker could not load the tokenizer, settings and plugins ({_start_error}); "
                       "use --workers 1")
    captured = io.StringIO()
    with redirect_stderr(captured):
        result = _builder(chunk, format_name)
    result.stderr = captured.getvalue()
    return result
