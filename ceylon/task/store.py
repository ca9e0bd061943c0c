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

A task's row is written whole (`put_task`): the last write of a task wins, so a task
handed out and ended while the writer was busy is written once. A task of a group with
no row yet is pending. Rows of a forgotten group are deleted with it (the caller writes
none after forgetting it). Writes never wait for the disk: each call queues its rows, and one
writer thread commits everything queued so far in one transaction.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
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
#: seconds the writer waits after a commit before it takes what was queued meanwhile
COMMIT_PAUSE: Final = 0.05


class StoreError(ValueError):
    """A task journal cannot be opened or written."""


@dataclasses.dataclass
class StoredTask:
    """A task's row: how far it got (a task without one is pending)."""

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
    "groups": "INSERT OR REPLACE INTO groups (group_id, body, status, submitter, goal_status) "
    "VALUES (?, ?, ?, ?, ?)",
    "tasks": "INSERT OR REPLACE INTO tasks (task_id, group_id, status, worker, attempts, "
    "result, error, start_time, end_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "ended": "UPDATE groups SET status = ?, goal_status = ? WHERE group_id = ?",
    "forget_tasks": "DELETE FROM tasks WHERE group_id = ?",
    "forget_groups": "DELETE FROM groups WHERE group_id = ?",
}


_ROWS_PER_STATEMENT: Final = 256
_PUT_MANY: Final = (
    "INSERT OR REPLACE INTO tasks (task_id, group_id, status, worker, attempts, result, "
    "error, start_time, end_time) VALUES "
    + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * _ROWS_PER_STATEMENT)
)


class _Batch:
    """Writes queued between two commits, applied in this order: groups added, task
    rows (the last of each task), groups ended, groups forgotten. A write that must
    come after one of a later kind starts the next batch."""

    __slots__ = ("groups", "tasks", "ended", "forgotten", "callbacks")

    def __init__(self) -> None:
        self.groups: dict[str, tuple[Any, ...]] = {}
        self.tasks: dict[str, tuple[Any, ...]] = {}
        self.ended: dict[str, tuple[Any, ...]] = {}
        self.forgotten: list[str] = []
        self.callbacks: list[Callable[[], None]] = []

    def statements(self) -> list[tuple[str, list[tuple[Any, ...]]]]:
        forgotten = [(group_id,) for group_id in self.forgotten]
        return [
            (kind, rows)
            for kind, rows in (
                ("groups", list(self.groups.values())),
                ("tasks", list(self.tasks.values())),
                ("ended", list(self.ended.values())),
                ("forget_tasks", forgotten),
                ("forget_groups", forgotten),
            )
            if rows
        ]


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
        self._batches: list[_Batch] = [_Batch()]
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

    def add_group(self, group: StoredGroup) -> None:
        g = group
        with self._lock:
            batch = self._batch()
            if g.group_id in batch.ended:
                batch = self._next_batch()  # made again after it ended
            batch.groups.pop(g.group_id, None)  # added again: it comes last
            batch.groups[g.group_id] = (g.group_id, g.body, g.status, g.submitter, g.goal_status)

    def put_task(self, task: StoredTask) -> None:
        t = task
        row = (t.task_id, t.group_id, t.status, t.worker, t.attempts, t.result, t.error,
               t.start_time, t.end_time)  # fmt: skip
        with self._lock:
            self._batch().tasks[t.task_id] = row

    def group_ended(self, group_id: str, status: str, goal_status: str = "") -> None:
        with self._lock:
            self._batch().ended[group_id] = (status, goal_status, group_id)

    def forget_groups(self, group_ids: list[str]) -> None:
        with self._lock:
            self._batch().forgotten += group_ids
            self._next_batch()  # what comes after a delete is applied after it

    def when_durable(self, callback: Callable[[], None]) -> None:
        with self._lock:
            self._batch().callbacks.append(callback)

    def _batch(self) -> _Batch:
        """The batch to add to (the lock held); wakes the writer for it."""
        if self._closed:
            raise StoreError("the task store is closed")
        self._lock.notify()
        return self._batches[-1]

    def _next_batch(self) -> _Batch:
        batch = _Batch()
        self._batches.append(batch)
        return batch

    async def aclose(self) -> None:
        """`close`, off the event loop (it waits for the last commit)."""
        await asyncio.to_thread(self.close)

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
                while not self._queued() and not self._closed:
                    self._lock.wait()
                batches, self._batches = self._batches, [_Batch()]
                if self._closed and not any(_size(b) for b in batches):
                    return
            self._apply(batches)
            # A pause after each commit makes the next one bigger: fewer, larger
            # transactions cost the event loop's CPU less (measured: +5-10 % tasks/s
            # when both share one core) for at most this much more latency.
            with self._lock:
                if not self._closed:
                    self._lock.wait_for(lambda: self._closed, COMMIT_PAUSE)

    def _queued(self) -> bool:
        return any(_size(b) for b in self._batches)

    def _put_rows(self, rows: list[tuple[Any, ...]]) -> None:
        # Many rows per statement: the sqlite3 module lets go of the GIL and takes it
        # back around each step, and taking it back from a busy event loop is what
        # costs, not SQLite's own work.
        full = len(rows) - len(rows) % _ROWS_PER_STATEMENT
        for start in range(0, full, _ROWS_PER_STATEMENT):
            chunk = rows[start : start + _ROWS_PER_STATEMENT]
            self._db.execute(_PUT_MANY, [value for row in chunk for value in row])
        if full < len(rows):
            self._db.executemany(_SQL["tasks"], rows[full:])

    def _apply(self, batches: list[_Batch]) -> None:
        try:
            self._db.execute("BEGIN")
            for batch in batches:
                for kind, rows in batch.statements():
                    if kind == "tasks":
                        self._put_rows(rows)
                    else:
                        self._db.executemany(_SQL[kind], rows)
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            changes = sum(_size(b) for b in batches)
            self._log.error("could not journal {} change(s) to {}: {}", changes, self.path, exc)
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        callbacks = [callback for batch in batches for callback in batch.callbacks]
        if not callbacks:
            return
        if self._call_soon is None:
            _run_all(callbacks)
            return
        try:  # one wake-up of the loop for all of them
            self._call_soon(functools.partial(_run_all, callbacks))
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass


def _run_all(callbacks: list[Callable[[], None]]) -> None:
    for callback in callbacks:
        try:
            callback()
        except Exception:  # one waiter's bug must not keep the others waiting
            logger.exception("a task store callback failed")


def _size(batch: _Batch) -> int:
    return (
        len(batch.groups) + len(batch.tasks) + len(batch.ended) + len(batch.forgotten)
        + len(batch.callbacks)
    )  # fmt: skip
