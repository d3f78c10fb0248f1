"""A failed ``dist_checkpointing`` write as one line naming the directory and the cause.

megatron-core writes each rank's shards in its own writer, which logs the OS error and hands on
only ``Worker failure: An error is caught while starting worker 0``; every rank then raises
torch's ``CheckpointException`` (a BaseException), the coordinator's naming which ranks failed.
``captured_writer_errors`` keeps the writer's log lines (off the console: the run reports the
failure itself, once), ``problem`` turns them into ``"<dir>: <cause>"`` (``write_errors``'s
wording). A rank whose own write was fine learns only that another failed: its message is
``secondary`` and defers to the failing rank's, which says why (``first_cause``).
"""

from __future__ import annotations

import contextlib
import logging
import re
from pathlib import Path

import torch
import torch.distributed as dist

from sft_trainer.write_errors import write_problem

LOGGER = "megatron.core.dist_checkpointing"
_WORKER_ERROR = re.compile(r"encountered an error: (.*)", re.S)
_OS_ERROR = re.compile(r"^\[Errno (\d+)\] ([^:]+?)(?:: '(.*)')?$")


class Secondary(str):
    """A rank's report that only says another rank failed."""


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR:
            self.errors.append(record.getMessage())


@contextlib.contextmanager
def captured_writer_errors():
    """megatron's dist-checkpointing log, kept from the console while a save or load runs."""
    logger = logging.getLogger(LOGGER)
    capture, propagate = _Capture(), logger.propagate
    logger.addHandler(capture)
    logger.propagate = False
    try:
        yield capture
    finally:
        logger.removeHandler(capture)
        logger.propagate = propagate


def _cause(text: str) -> BaseException:
    """The writer's error rebuilt from its log line, so ``write_problem`` can word it."""
    match = _OS_ERROR.match(text.strip())
    if match:
        code = int(match.group(1))
        return OSError(code, match.group(2), match.group(3)) if match.group(3) else OSError(code, match.group(2))
    return RuntimeError(text.strip())


def is_checkpoint_failure(exc: BaseException) -> bool:
    """torch's ``CheckpointException`` or megatron's ``CheckpointingException``: a failed write or
    read, not a bug of ours."""
    return type(exc).__name__ in ("CheckpointException", "CheckpointingException")


def _first_line(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def problem(exc: BaseException, capture: _Capture, directory: Path) -> str:
    """This rank's one line for a failed save of ``directory``."""
    for line in capture.errors:
        match = _WORKER_ERROR.search(line)
        if match:
            cause = _cause(match.group(1))
            return write_problem(cause, directory) or f"{directory}: {_first_line(cause)}"
    failures = getattr(exc, "failures", None)
    if isinstance(failures, dict):  # torch's CheckpointException: {rank: (exception, traceback)}
        if dist.is_initialized() and dist.get_rank() in failures:
            own = failures[dist.get_rank()]
            own = own[0] if isinstance(own, tuple) else own
            return f"{directory}: the write failed ({_first_line(own)})"
        others = sorted(failures)
        where = f"rank {others[0]}" if others else "another rank"
        return Secondary(f"{directory}: the write failed on {where}")
    return write_problem(exc, directory) or f"{directory}: {_first_line(exc)}"


def first_cause(problem_here: str | None) -> str | None:
    """Like ``distributed.first_failure`` (a collective), but the lowest rank that knows why a
    write failed speaks for all; ranks that only saw it fail elsewhere are heard last."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return None if problem_here is None else str(problem_here)
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    flag = torch.tensor([problem_here is not None], dtype=torch.int32, device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    if not flag.item():
        return None
    reports = [None] * dist.get_world_size()
    dist.all_gather_object(reports, None if problem_here is None
                           else (isinstance(problem_here, Secondary), str(problem_here)))
    ranked = sorted((secondary, rank, text) for rank, report in enumerate(reports) if report
                    for secondary, text in [report])
    _, rank, text = ranked[0]
    return text if rank == 0 else f"rank {rank}: {text}"
