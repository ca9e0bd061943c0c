"""Where the task plugin journals its state: groups, tasks, hand-outs and outcomes.

`TaskStore` is the interface; `MemoryTaskStore` keeps nothing past the process,
`SqliteTaskStore` writes an SQLite file. The store knows nothing of messages: the plugin
hands it bytes (encoded groups and results) and plain columns.

Durability of `SqliteTaskStore`: WAL mode with ``synchronous=NORMAL``. A committed
transaction survives a crash of the process (SIGKILL included: the WAL is replayed when
the file is opened again); a power loss or a kernel crash may take the transactions of
the last moments (the WAL is not synced on every commit), never corrupt the file. That
is the trade the plugin wants: its writes keep up with tens of thousands of tasks a
second, and a worker forgets an outcome only once its commit is done (`when_durable`),
so what a crash of the playground takes is re-delivered, and what a power loss takes
is run again (at-least-once execution, each outcome recorded once).

Writes never wait for the disk: each call queues an operation, and one writer thread
applies everything queued so far in one transaction.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, Protocol

from loguru import logger

__all__ = [
    "MemoryTaskStore",
    "SqliteTaskStore",
    "StoreError",
    "StoredGroup",
    "StoredState",
    "StoredTask",
    "TaskStore",
]

SCHEMA_VERSION: Final = 1
_PENDING: Final = "pending"
_IN_PROGRESS: Final = "in_progress"


class StoreError(ValueError):
    """A task journal cannot be opened or written."""


@dataclasses.dataclass
class StoredTask:
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
    tasks: dict[str, StoredTask]


class TaskStore(Protocol):
    """A journal of task state (see the module docstring)."""

    path: str  # ":memory:" for one that keeps nothing

    def load(self) -> StoredState: ...
    def add_group(self, group: StoredGroup, task_ids: list[str]) -> None: ...
    def task_started(self, task_id: str, worker: str, attempts: int) -> None: ...
    def task_requeued(self, task_id: str) -> None: ...
    def task_ended(self, task: StoredTask) -> None: ...
    def group_ended(self, group_id: str, status: str, goal_status: str = "") -> None: ...
    def forget_groups(self, group_ids: list[str]) -> None: ...
    def when_durable(self, callback: Callable[[], None]) -> None: ...
    def close(self) -> None: ...


class MemoryTaskStore:
    """A `TaskStore` in this process's memory: everything is "durable" at once."""

    path = ":memory:"

    def __init__(self) -> None:
        self._groups: dict[str, StoredGroup] = {}
        self._tasks: dict[str, StoredTask] = {}

    def load(self) -> StoredState:
        return StoredState(list(self._groups.values()), dict(self._tasks))

    def add_group(self, group: StoredGroup, task_ids: list[str]) -> None:
        self._groups[group.group_id] = group
        for task_id in task_ids:
            self._tasks[task_id] = StoredTask(task_id, group.group_id, _PENDING)

    def task_started(self, task_id: str, worker: str, attempts: int) -> None:
        task = self._tasks.get(task_id)
        if task is not None:
            task.status, task.worker, task.attempts = _IN_PROGRESS, worker, attempts

    def task_requeued(self, task_id: str) -> None:
        task = self._tasks.get(task_id)
        if task is not None:
            task.status, task.worker = _PENDING, ""

    def task_ended(self, task: StoredTask) -> None:
        if task.task_id in self._tasks:
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


_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS groups (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id TEXT UNIQUE NOT NULL,
    body BLOB NOT NULL,
    status TEXT NOT NULL,
    submitter TEXT NOT NULL,
    goal_status TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY,
    group_id TEXT NOT NULL,
    status TEXT NOT NULL,
    worker TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    result BLOB,
    error TEXT,
    start_time REAL,
    end_time REAL
);
CREATE INDEX IF NOT EXISTS tasks_by_group ON tasks (group_id);
"""

_SQL: Final = {
    "group": "INSERT OR REPLACE INTO groups (group_id, body, status, submitter, goal_status) "
    "VALUES (?, ?, ?, ?, ?)",
    "task": "INSERT OR REPLACE INTO tasks (task_id, group_id, status) VALUES (?, ?, 'pending')",
    "started": "UPDATE tasks SET status = 'in_progress', worker = ?, attempts = ? "
    "WHERE task_id = ?",
    "requeued": "UPDATE tasks SET status = 'pending', worker = '' WHERE task_id = ?",
    "ended": "UPDATE tasks SET status = ?, worker = ?, attempts = ?, result = ?, error = ?, "
    "start_time = ?, end_time = ? WHERE task_id = ?",
    "group_ended": "UPDATE groups SET status = ?, goal_status = ? WHERE group_id = ?",
    "forget_tasks": "DELETE FROM tasks WHERE group_id = ?",
    "forget_group": "DELETE FROM groups WHERE group_id = ?",
}

_Op = tuple[str, tuple[Any, ...]]


class SqliteTaskStore:
    """A `TaskStore` in an SQLite file (WAL, ``synchronous=NORMAL``: see the module).

    Args:
        path: the database file; its directory is made if missing.
        call_soon: how `when_durable` callbacks are run (e.g. a loop's
            ``call_soon_threadsafe``); by default in the writer thread.

    Raises:
        StoreError: the file is not a task journal this version can read.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        call_soon: Callable[[Callable[[], None]], Any] | None = None,
    ) -> None:
        self.path = str(path)
        self._call_soon = call_soon
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path}: journal format {version} is newer than this version "
                    f"of ceylon reads ({SCHEMA_VERSION})"
                )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: not a task journal ({exc})") from None
        self._lock = threading.Condition()
        self._ops: list[_Op | Callable[[], None]] = []
        self._closed = False
        self._writer = threading.Thread(target=self._write, name="ceylon-task-store", daemon=True)
        self._writer.start()
        self._log = logger.bind(agent="tasks")

    # -- reading ------------------------------------------------------------------------

    def load(self) -> StoredState:
        with self._lock:
            groups = [
                StoredGroup(*row)
                for row in self._db.execute(
                    "SELECT group_id, body, status, submitter, goal_status FROM groups ORDER BY seq"
                )
            ]
            tasks = {
                row[0]: StoredTask(*row)
                for row in self._db.execute(
                    "SELECT task_id, group_id, status, worker, attempts, result, error, "
                    "start_time, end_time FROM tasks"
                )
            }
        return StoredState(groups, tasks)

    # -- writing (queued) -------------------------------------------------------------

    def add_group(self, group: StoredGroup, task_ids: list[str]) -> None:
        g = group
        ops: list[_Op | Callable[[], None]] = [
            ("group", (g.group_id, g.body, g.status, g.submitter, g.goal_status))
        ]
        ops += [("task", (task_id, g.group_id)) for task_id in task_ids]
        self._queue(ops)

    def task_started(self, task_id: str, worker: str, attempts: int) -> None:
        self._queue([("started", (worker, attempts, task_id))])

    def task_requeued(self, task_id: str) -> None:
        self._queue([("requeued", (task_id,))])

    def task_ended(self, task: StoredTask) -> None:
        t = task
        args = (t.status, t.worker, t.attempts, t.result, t.error, t.start_time, t.end_time)
        self._queue([("ended", (*args, t.task_id))])

    def group_ended(self, group_id: str, status: str, goal_status: str = "") -> None:
        self._queue([("group_ended", (status, goal_status, group_id))])

    def forget_groups(self, group_ids: list[str]) -> None:
        ops: list[_Op | Callable[[], None]] = []
        for group_id in group_ids:
            ops += [("forget_tasks", (group_id,)), ("forget_group", (group_id,))]
        self._queue(ops)

    def when_durable(self, callback: Callable[[], None]) -> None:
        self._queue([callback])

    def _queue(self, ops: list[_Op | Callable[[], None]]) -> None:
        with self._lock:
            if self._closed:
                raise StoreError("the task store is closed")
            self._ops += ops
            self._lock.notify()

    def close(self) -> None:
        """Write what is queued, then close the file (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._lock.notify()
        self._writer.join()
        self._db.close()

    # -- the writer thread ------------------------------------------------------------

    def _write(self) -> None:
        while True:
            with self._lock:
                while not self._ops and not self._closed:
                    self._lock.wait()
                ops, self._ops = self._ops, []
                if not ops and self._closed:
                    return
            self._apply(ops)

    def _apply(self, ops: list[_Op | Callable[[], None]]) -> None:
        callbacks: list[Callable[[], None]] = []
        try:
            self._db.execute("BEGIN")
            run: list[tuple[Any, ...]] = []
            kind = ""
            for op in ops:
                if callable(op):
                    callbacks.append(op)
                    continue
                if op[0] != kind and run:
                    self._db.executemany(_SQL[kind], run)
                    run = []
                kind = op[0]
                run.append(op[1])
            if run:
                self._db.executemany(_SQL[kind], run)
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._log.error("could not journal {} change(s) to {}: {}", len(ops), self.path, exc)
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        for callback in callbacks:
            if self._call_soon is not None:
                try:
                    self._call_soon(callback)
                except RuntimeError:  # the loop is closed: nobody waits any more
                    pass
            else:
                callback()
