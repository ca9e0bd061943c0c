"""Which worker runs which ready task, sans-I/O.

Rules: a task goes only to a worker whose role is its ``required_role``; higher priority
first (then first come, first served); a worker never holds more than its capacity; a
worker that leaves gives every task it held back, to be handed out again ahead of the
rest; a completion counts only from the worker holding the task (a duplicate or a late
one is ignored); a task that raised is tried again until ``max_retries`` is used up.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
from collections.abc import Iterable
from typing import Final, Literal

__all__ = ["Assigner", "Assignment", "WorkerSlot"]

Assignment = tuple[str, str]  # (task_id, worker_id)
FailureOutcome = Literal["retry", "failed", "ignored"]

_REQUEUED: Final = -(10**9)  # sorts a returned task before every fresh one


@dataclasses.dataclass
class WorkerSlot:
    worker_id: str
    role: str
    capacity: int
    running: set[str] = dataclasses.field(default_factory=set)

    @property
    def free(self) -> int:
        return self.capacity - len(self.running)


class Assigner:
    """Matches ready tasks to workers.

    Args:
        max_retries: how many times a task that raised is handed out again.
    """

    def __init__(self, max_retries: int = 0) -> None:
        self.max_retries = max_retries
        self.workers: dict[str, WorkerSlot] = {}
        self.holder: dict[str, str] = {}  # task_id -> worker_id
        self.attempts: dict[str, int] = {}
        self._queues: dict[str, list[tuple[int, int, str]]] = {}  # role -> heap
        self._role_of: dict[str, str] = {}
        self._priority: dict[str, int] = {}
        self._order = itertools.count()
        self._by_role: dict[str, list[str]] = {}  # role -> worker ids, join order

    # -- tasks ------------------------------------------------------------------------

    def add(self, task_id: str, role: str, priority: int = 1) -> None:
        """A task is ready to run."""
        self._role_of[task_id] = role
        self._priority[task_id] = priority
        heapq.heappush(self._queues.setdefault(role, []), (-priority, next(self._order), task_id))

    def _requeue(self, task_id: str) -> None:
        role = self._role_of[task_id]
        heapq.heappush(self._queues.setdefault(role, []), (_REQUEUED, next(self._order), task_id))

    def waiting(self, role: str | None = None) -> int:
        """Ready tasks not handed out yet (for one role, or all)."""
        if role is not None:
            return len(self._queues.get(role, ()))
        return sum(len(q) for q in self._queues.values())

    def roles_without_workers(self) -> list[str]:
        """Roles with waiting tasks and no worker at all."""
        return [
            role for role, queue in self._queues.items() if queue and not self._by_role.get(role)
        ]

    def discard(self, task_ids: set[str]) -> None:
        """Take these tasks out of the queues (cancelled); held ones stay with their
        workers until they report."""
        for role, queue in self._queues.items():
            kept = [entry for entry in queue if entry[2] not in task_ids]
            if len(kept) != len(queue):
                heapq.heapify(kept)
                self._queues[role] = kept

    def drop_role(self, role: str) -> list[str]:
        """Take every waiting task of `role` out (e.g. to fail them); returns their ids."""
        queue = self._queues.pop(role, [])
        return [task_id for _, _, task_id in queue]

    # -- workers ----------------------------------------------------------------------

    def join(
        self, worker_id: str, role: str, capacity: int, holding: Iterable[str] = ()
    ) -> list[Assignment]:
        """A worker is available, already running the tasks `holding` (ones it had before
        a restart: not queued, known to `add`); returns what it gets at once."""
        if worker_id in self.workers:
            return []
        slot = self.workers[worker_id] = WorkerSlot(worker_id, role, max(1, capacity))
        self._by_role.setdefault(role, []).append(worker_id)
        for task_id in holding:
            slot.running.add(task_id)
            self.holder[task_id] = worker_id
            self.attempts.setdefault(task_id, 1)
        return self._fill(slot)

    def release(self, task_id: str) -> list[Assignment]:
        """Take a task back from its holder (it does not have it after all) and hand it
        out again, first in its queue."""
        worker_id = self.holder.pop(task_id, None)
        if worker_id is not None:
            self.workers[worker_id].running.discard(task_id)
        return self.requeue(task_id)

    def known(self, task_id: str, role: str, priority: int = 1) -> None:
        """A task handed out before a restart, not queued: its role and priority."""
        self._role_of[task_id] = role
        self._priority[task_id] = priority

    def requeue(self, task_id: str) -> list[Assignment]:
        """A task known (`known`) and held by nobody goes back to the front of its queue."""
        self._requeue(task_id)
        return self.assign(self._role_of[task_id])

    def leave(self, worker_id: str) -> tuple[list[str], list[Assignment]]:
        """A worker is gone: its tasks go back, to the front; returns them and reassignments."""
        slot = self.workers.pop(worker_id, None)
        if slot is None:
            return [], []
        self._by_role[slot.role].remove(worker_id)
        returned = sorted(slot.running)
        for task_id in returned:
            del self.holder[task_id]
            self._requeue(task_id)
        return returned, self.assign(slot.role)

    # -- results ----------------------------------------------------------------------

    def completed(self, task_id: str, worker_id: str) -> tuple[bool, list[Assignment]]:
        """A worker reports a task done; accepted only from its holder.

        Returns:
            Whether it counts, and what the freed slot gets.
        """
        if self.holder.get(task_id) != worker_id:
            return False, []
        slot = self.workers[worker_id]
        del self.holder[task_id]
        slot.running.discard(task_id)
        return True, self._fill(slot)

    def failed(self, task_id: str, worker_id: str) -> tuple[FailureOutcome, list[Assignment]]:
        """A task raised on its worker: try it again, or report it failed for good."""
        if self.holder.get(task_id) != worker_id:
            return "ignored", []
        slot = self.workers[worker_id]
        del self.holder[task_id]
        slot.running.discard(task_id)
        tries = self.attempts.get(task_id, 1)
        if tries <= self.max_retries:
            self._requeue(task_id)
            return "retry", self.assign(slot.role)
        return "failed", self._fill(slot)

    # -- assigning --------------------------------------------------------------------

    def assign(self, role: str | None = None) -> list[Assignment]:
        """Hand out what can be handed out (for one role, or all)."""
        roles: Iterable[str] = [role] if role is not None else list(self._queues)
        out: list[Assignment] = []
        for name in roles:
            for worker_id in self._by_role.get(name, ()):
                out += self._fill(self.workers[worker_id])
        return out

    def _fill(self, slot: WorkerSlot) -> list[Assignment]:
        queue = self._queues.get(slot.role)
        out: list[Assignment] = []
        while queue and len(slot.running) < slot.capacity:
            _, _, task_id = heapq.heappop(queue)
            slot.running.add(task_id)
            self.holder[task_id] = slot.worker_id
            self.attempts[task_id] = self.attempts.get(task_id, 0) + 1
            out.append((task_id, slot.worker_id))
        return out
