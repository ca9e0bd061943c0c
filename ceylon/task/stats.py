"""Statistics of a task run, computed from the tasks themselves (sans-I/O)."""

from __future__ import annotations

import collections
import dataclasses
import statistics
from collections.abc import Iterable

from .data import TaskMessage

__all__ = ["TaskStatistics", "summarize"]


@dataclasses.dataclass(frozen=True)
class TaskStatistics:
    total: int
    completed: int
    failed: int
    pending: int
    per_worker: dict[str, int]
    average_duration: float
    p95_duration: float
    throughput: float  # completed tasks per second of wall time
    wall_time: float

    def lines(self) -> list[str]:
        """The statistics as printable lines."""
        out = [
            f"Tasks: {self.total} total, {self.completed} completed, {self.failed} failed, "
            f"{self.pending} pending",
            f"Average duration: {self.average_duration:.3f} s, p95 {self.p95_duration:.3f} s",
            f"Throughput: {self.throughput:,.1f} tasks/s over {self.wall_time:.2f} s",
        ]
        for worker, count in sorted(self.per_worker.items()):
            out.append(f"  {worker}: {count} completed")
        return out


def summarize(
    tasks: Iterable[TaskMessage], completed: Iterable[TaskMessage], failed: int
) -> TaskStatistics:
    """Statistics over all `tasks`, given those `completed` and the number `failed`."""
    total = len(list(tasks))
    done = list(completed)
    durations = sorted(
        t.end_time - t.start_time
        for t in done
        if t.start_time is not None and t.end_time is not None
    )
    per_worker = collections.Counter(t.assigned_to or "?" for t in done)
    starts = [t.start_time for t in done if t.start_time is not None]
    ends = [t.end_time for t in done if t.end_time is not None]
    wall = (max(ends) - min(starts)) if starts and ends else 0.0
    return TaskStatistics(
        total=total,
        completed=len(done),
        failed=failed,
        pending=total - len(done) - failed,
        per_worker=dict(per_worker),
        average_duration=statistics.fmean(durations) if durations else 0.0,
        p95_duration=durations[min(len(durations) - 1, int(len(durations) * 0.95))]
        if durations
        else 0.0,
        throughput=len(done) / wall if wall > 0 else 0.0,
        wall_time=wall,
    )
