"""What the task plugin journals, and where: groups, tasks, hand-outs and outcomes.

`TaskStore` is the interface; `MemoryTaskStore` keeps nothing past the process,
`SqliteTaskStore` (in `sqlitestore`) writes an SQLite file and `JetStreamTaskStore` (in
`jetstream`) a JetStream stream. The store knows nothing of messages: the plugin hands it
bytes (encoded groups and results) and plain columns.

A task's row is written whole (`put_task`): the last write of a task wins. A task of a
group with no row yet is pending. Rows of a forgotten group are deleted with it (the
caller writes none after forgetting it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

__all__ = [
    "MemoryTaskStore",
    "StoreError",
    "StoredGroup",
    "StoredState",
    "StoredTask",
    "TaskStore",
]


class StoreError(ValueError):
    """A task journal cannot be opened or written."""


class StoredTask(NamedTuple):
    """A task's row: how far it got (a task without one is pending). A tuple: rows are
    made for every hand-out and outcome, and one packs as a record's operation as is."""

    task_id: str
    group_id: str
    status: str  # "pending" | "in_progress" | "completed" | "failed"
    worker: str = ""  # the name of the worker it was last given to
    attempts: int = 0
    result: bytes | None = None  # encoded by the caller
    error: str | None = None
    start_time: float | None = None
    end_time: float | None = None


@dataclasses.dataclass
class StoredGroup:
    group_id: str
    body: bytes  # the encoded TaskGroup as submitted
    status: str
    submitter: str = ""
    goal_status: str = ""


@dataclasses.dataclass
class StoredState:
    groups: list[StoredGroup]  # in the order they were added
    tasks: dict[str, StoredTask]  # the tasks that have a row


class TaskStore(Protocol):
    """A journal of task state (see the module docstring)."""

    path: str  # ":memory:" for one that keeps nothing

    def load(self) -> StoredState: ...
    def add_group(self, group: StoredGroup) -> None: ...
    def put_task(self, task: StoredTask) -> None: ...
    def group_ended(self, group_id: str, status: str, goal_status: str = "") -> None: ...
    def forget_groups(self, group_ids: list[str]) -> None: ...
    def when_durable(self, callback: Callable[[], None]) -> None: ...
    def close(self) -> None: ...
    async def aclose(self) -> None: ...


class MemoryTaskStore:
    """A `TaskStore` in this process's memory: everything is "durable" at once."""

    path = ":memory:"

    def __init__(self) -> None:
        self._groups: dict[str, StoredGroup] = {}
        self._tasks: dict[str, StoredTask] = {}

    def load(self) -> StoredState:
        return StoredState(list(self._groups.values()), dict(self._tasks))

    def add_group(self, group: StoredGroup) -> None:
        self._groups.pop(group.group_id, None)  # one added again comes last, as in SQLite
        self._groups[group.group_id] = group

    def put_task(self, task: StoredTask) -> None:
        self._tasks[task.task_id] = task

    def group_ended(self, group_id: str, status: str, goal_status: str = "") -> None:
        group = self._groups.get(group_id)
        if group is not None:
            group.status, group.goal_status = status, goal_status

    def forget_groups(self, group_ids: list[str]) -> None:
        doomed = set(group_ids)
        for group_id in doomed:
            self._groups.pop(group_id, None)
        for task_id in [t for t, task in self._tasks.items() if task.group_id in doomed]:
            del self._tasks[task_id]

    def when_durable(self, callback: Callable[[], None]) -> None:
        callback()

    def close(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


def __getattr__(name: str) -> Any:
    # `SqliteTaskStore` lived here before it had a module of its own (`sqlitestore`,
    # which imports this one): still importable from here.
    if name == "SqliteTaskStore":
        from .sqlitestore import SqliteTaskStore

        return SqliteTaskStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
