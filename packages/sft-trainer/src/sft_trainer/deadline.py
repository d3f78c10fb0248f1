"""``trainer.max_time``: stop with a checkpoint before a wall-clock limit, as a cluster job needs.

The clock starts when ``train`` starts, so loading the model and preparing data count. After each
step the loop asks whether one more step and a checkpoint save after it would still end within the
limit; when they would not, it saves now and stops (``stopped: max_time``), and the same command
resumes in the next job. A step is estimated by the longest step so far (validation included) and
a save by the longest save so far, or by a step before the first save: both only grow, so the
estimate errs towards stopping early rather than being killed mid-save. Ranks measure slightly
different times; the loop stops all of them when any one would stop (``distributed.any_rank``).
"""

from __future__ import annotations

from time import monotonic


class Deadline:
    def __init__(self, limit_seconds: float):
        self.limit = limit_seconds
        self.start = monotonic()
        self.longest_step = 0.0
        self.longest_save: float | None = None

    @staticmethod
    def clock() -> float:
        return monotonic()

    @property
    def elapsed(self) -> float:
        return monotonic() - self.start

    def stepped(self, seconds: float) -> None:
        self.longest_step = max(self.longest_step, seconds)

    def saved(self, seconds: float) -> None:
        self.longest_save = max(self.longest_save or 0.0, seconds)

    def expired(self) -> bool:
        """The limit is already reached (before the first step: nothing to estimate yet)."""
        return self.elapsed >= self.limit

    def next_step_overruns(self, *, saving_now: bool) -> bool:
        """Whether one more step and the save after it (plus the save about to happen, when
        ``saving_now``) would end past the limit."""
        save = self.longest_step if self.longest_save is None else self.longest_save
        needed = self.longest_step + save + (save if saving_now else 0.0)
        return self.elapsed + needed > self.limit
