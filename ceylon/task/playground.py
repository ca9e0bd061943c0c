"""`TaskPlayGround`: a playground hosting the task plugin, with the tutorial's API."""

from __future__ import annotations

import os
from typing import Any

from ..base.playground import BasePlayGround
from .data import TaskGroup, TaskMessage
from .jetstream import journal_on_nats
from .journal import Journal, open_store
from .manager import TaskManager
from .plugin import (
    KEEP_FINISHED_FOR,
    KEEP_FINISHED_GROUPS,
    LEASE,
    MAX_WORKER_SLOTS,
    StoreFactory,
    TaskPlugin,
)
from .stats import TaskStatistics
from .store import TaskStore

__all__ = ["TaskPlayGround"]


class TaskPlayGround(BasePlayGround):
    """A playground that runs task groups on its `TaskExecutionAgent` workers.

    Args:
        name, port, **kwargs: as `BasePlayGround`.
        max_retries: how many more times a task that raised is tried.
        role_timeout: seconds a task may wait for a worker of its role to exist before it
            fails; None (the default) waits, with a warning.
        task_timeout: seconds a task may run when neither it (`TaskMessage.timeout`) nor
            its group (`TaskGroup.task_timeout`) says; None (the default): no limit.
        max_worker_slots: the most tasks one worker is handed at once, whatever it
            declares (default 64).
        keep_finished_groups: the most ended groups kept (default 1000) once they and
            every group that depends on them ended; older ones are forgotten, with their
            tasks and results. None: no count limit.
        keep_finished_for: seconds such a group is kept at most (default 3600). None: no
            age limit. Forgetting is lazy (when groups are added, and on the periodic
            check, about once a second), so the getters below still return a run's
            results right after `wait_for_completion`.
        state: journal the task state to this SQLite file (or into a `TaskStore`): a
            playground started on an existing journal resumes its groups (see the
            README's Durability). In memory when not given; on NATS (``nats=``), in
            JetStream when not given.
        lease: seconds a resumed playground keeps a task for the worker that had it.
    """

    def __init__(
        self,
        name: str = "task_playground",
        port: int | None = None,
        *,
        max_retries: int = 0,
        role_timeout: float | None = None,
        task_timeout: float | None = None,
        max_worker_slots: int = MAX_WORKER_SLOTS,
        keep_finished_groups: int | None = KEEP_FINISHED_GROUPS,
        keep_finished_for: float | None = KEEP_FINISHED_FOR,
        state: str | os.PathLike[str] | TaskStore | None = None,
        lease: float = LEASE,
        **kwargs: Any,
    ) -> None:
        super().__init__(name=name, port=port, **kwargs)
        store: TaskStore | StoreFactory | None = None
        if state is not None and not isinstance(state, (str, os.PathLike)):
            store = state
        elif state is None and self.settings.nats is not None:
            store = journal_on_nats  # on NATS: in JetStream, where a standby finds it
        self.task_plugin = TaskPlugin(
            max_retries,
            role_timeout,
            task_timeout,
            max_worker_slots,
            keep_finished_groups=keep_finished_groups,
            keep_finished_for=keep_finished_for,
            store=store,
            lease=lease,
        )
        self._state = state if isinstance(state, (str, os.PathLike)) else None
        self.add_plugin(self.task_plugin)

    async def start(self) -> None:
        if self._state is not None and not self.started:  # opened in the loop that uses it
            self.task_plugin.journal = Journal(open_store(self._state))
            self._state = None
        await super().start()

    @property
    def task_manager(self) -> TaskManager:
        """The groups (``task_manager.task_groups``) and tasks, updated as work progresses.

        Groups forgotten (see ``keep_finished_groups``) are no longer in it.
        """
        return self.task_plugin.manager

    async def assign_task_groups(self, groups: list[TaskGroup]) -> None:
        """Start running `groups` (in dependency and priority order) on the workers.

        The groups are checked together first and nothing runs unless all pass. What only
        a run sets (each task's status, worker, result and times; each group's status,
        ``required_by`` and goal status) is reset.

        Raises:
            ValueError: a repeated or already used id, a dependency on a task outside its
                group or on an unknown group, a task or group that depends on itself, or
                a dependency cycle (named).
        """
        self.task_plugin.add_groups(list(groups))

    async def wait_for_completion(
        self, timeout: float | None = None, group: TaskGroup | str | None = None
    ) -> None:
        """Wait until every task given so far has ended (completed or failed).

        Args:
            group: a group (or its ``task_id``): wait for its tasks alone, whatever the
                other groups do.

        Raises:
            TimeoutError: `timeout` passed first.
            KeyError: `group` was never given to this playground.
        """
        group_id = group.task_id if isinstance(group, TaskGroup) else group
        await self.task_plugin.wait_for_completion(timeout, group_id)

    def get_completed_tasks(self) -> dict[str, TaskMessage]:
        """Completed tasks by task_id (with ``completed``, times, ``assigned_to``, ``result``)."""
        return dict(self.task_manager.completed_tasks)

    def get_failed_tasks(self) -> dict[str, TaskMessage]:
        return dict(self.task_manager.failed_tasks)

    def get_task_results(self) -> dict[str, Any]:
        """The result of every completed task, by task_id."""
        return {task_id: task.result for task_id, task in self.task_manager.completed_tasks.items()}

    def get_task_errors(self) -> dict[str, str]:
        """Why each failed task failed, by task_id."""
        return dict(self.task_manager.errors)

    def statistics(self) -> TaskStatistics:
        """Counts, per-worker counts, average and p95 duration, throughput."""
        return self.task_plugin.statistics()

    async def print_all_statistics(self) -> TaskStatistics:
        """Print the statistics (and return them)."""
        stats = self.statistics()
        print("\n".join(["Task statistics:", *stats.lines()]), flush=True)
        return stats
