"""`SqliteTaskStore`: the task journal in an SQLite file, as a log of records.

Each commit appends one row to the table ``log``: the writes queued since the previous
commit, as one record of operations (see `records`; of a task's writes in one commit only
the last is kept). Reading the journal replays the rows in order; the last write of a task
wins. Once the log holds twice as many changes as the state they make, and `COMPACT_AFTER`
more than the last snapshot, the writer replaces it, in one transaction, with a snapshot of
that state (kept in memory, so a snapshot costs no replay). Appending one row a commit
keeps the writer's share of the event loop's core small: the first format of this journal
(a row per task, still read and converted when opened) updated B-trees at random places on
every write and cost the writer thread two to three times as much CPU (0.54 s against
0.2-0.3 s for 100,000 tasks handed out and ended).

Durability: WAL mode with ``synchronous=NORMAL``. A committed transaction survives a
crash of the process (SIGKILL included: the WAL is replayed when the file is opened
again); a power loss or a kernel crash may take the transactions of the last moments
(the WAL is not synced on every commit), never corrupt the file. That is the trade the
plugin wants: its writes keep up with tens of thousands of tasks a second, and a worker
forgets an outcome only once its commit is done (`when_durable`), so what a crash of
the playground takes is re-delivered, and what a power loss takes is run again
(at-least-once execution, each outcome recorded once).

Writes never wait for the disk: each call queues its operation, and one writer thread
commits everything queued so far in one transaction.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import msgpack
from loguru import logger

from .records import LogState, Op, group_ops, read_record
from .store import StoredGroup, StoredState, StoredTask, StoreError

__all__ = ["COMPACT_AFTER", "SqliteTaskStore", "read_state"]

#: the journal format written (1: a row per task, converted when opened)
SCHEMA_VERSION: Final = 2
#: seconds the writer waits after a commit before it takes what was queued meanwhile
COMMIT_PAUSE: Final = 0.05
#: changes appended since the last snapshot before the log may be compacted again
COMPACT_AFTER: Final = 100_000
#: the largest row a snapshot writes (a group body over it is split into parts)
_RECORD_LIMIT: Final = 8 * 1024 * 1024
_pack = msgpack.Packer(use_bin_type=True).pack

_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS log (seq INTEGER PRIMARY KEY, count INTEGER NOT NULL, "
    "ops BLOB NOT NULL)"
)


def read_state(path: str | os.PathLike[str]) -> StoredState:
    """The state journaled in `path`, read beside a playground that may be writing it.

    Raises:
        StoreError: `path` is not a task journal this version can read.
    """
    if not Path(path).is_file():
        raise StoreError(f"{path}: no such task journal")
    try:
        conn = sqlite3.connect(path)
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot be opened ({exc})") from None
    try:
        with conn:  # one read transaction: a consistent state while the writer commits
            conn.execute("BEGIN")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            state = _read_v1(conn) if version == 1 else _replay(conn, str(path))
            return state.state()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: not a task journal ({exc})") from None
    finally:
        conn.close()


class SqliteTaskStore:
    """A `TaskStore` in an SQLite file (see the module docstring).

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
        self._log = logger.bind(agent="tasks")
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._open()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: not a task journal ({exc})") from None
        self._lock = threading.Condition()
        # Writes and callbacks in the order they were made. Appending to a deque needs
        # no lock: the event loop takes the lock only to wake an idle writer.
        self._queue: collections.deque[_Queued] = collections.deque()
        self._idle = False  # the writer waits for something to be queued
        self._written = False  # whether anything was queued since the file was opened
        self._closed = False
        self._writer = threading.Thread(target=self._write, name="ceylon-task-store", daemon=True)
        self._writer.start()

    def _open(self) -> None:
        db = self._db
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: journal format {version} is newer than this version "
                f"of ceylon reads ({SCHEMA_VERSION})"
            )
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(_SCHEMA)
            if version == 1:
                self._convert_v1()
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        #: the state committed, kept by the writer thread once it runs
        self._state = _replay(db, self.path)
        #: changes (groups, task rows, ends) in the log, and in it at the last snapshot
        self._logged: int = db.execute("SELECT coalesce(sum(count), 0) FROM log").fetchone()[0]
        self._live = 0

    def _convert_v1(self) -> None:
        """Rewrite a journal of the first format (a row per task) as a snapshot."""
        self._insert(_read_v1(self._db).ops(_RECORD_LIMIT))
        self._db.execute("DROP TABLE tasks")
        self._db.execute("DROP TABLE groups")
        self._log.info("task journal {} converted to format {}", self.path, SCHEMA_VERSION)

    # -- reading ------------------------------------------------------------------------

    def load(self) -> StoredState:
        """The state committed so far (what is still queued is not in it)."""
        with self._lock:
            if not self._written:  # the writer has not touched it: as opened
                return self._state.state()
        return read_state(self.path)

    # -- writing (queued) -------------------------------------------------------------

    def add_group(self, group: StoredGroup) -> None:
        self._put(group)

    def put_task(self, task: StoredTask) -> None:
        # Queued as a plain tuple, which the garbage collector stops tracking at its
        # first look (a subclass's never): rows wait here for up to a commit's pause.
        self._put(tuple(task))

    def group_ended(self, group_id: str, status: str, goal_status: str = "") -> None:
        self._put(["e", group_id, status, goal_status])

    def forget_groups(self, group_ids: list[str]) -> None:
        self._put(["f", list(group_ids)])

    def when_durable(self, callback: Callable[[], None]) -> None:
        self._put(callback)

    def _put(self, item: _Queued) -> None:
        if self._closed:
            raise StoreError("the task store is closed")
        self._queue.append(item)
        self._written = True
        if self._idle:  # set by the writer before it looks at the queue and waits
            with self._lock:
                self._idle = False
                self._lock.notify()

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
                while not self._queue and not self._closed:
                    self._idle = True
                    self._lock.wait()
                self._idle = False
                closing = self._closed
                queue = self._queue
                queued = [queue.popleft() for _ in range(len(queue))]
            callbacks = [item for item in queued if callable(item)]
            if len(callbacks) < len(queued):
                self._commit(queued)
            if callbacks:
                self._done(callbacks)
            if closing:
                return
            if self._compact_due():
                self._compact()
            # A pause after each commit makes the next one bigger: fewer, larger
            # transactions cost the event loop's CPU less (measured: +5-10 % tasks/s
            # when both share one core) for at most this much more latency.
            with self._lock:
                if not self._closed:
                    self._lock.wait_for(lambda: self._closed, COMMIT_PAUSE)

    def _compact_due(self) -> bool:
        """Whether the log holds `COMPACT_AFTER` changes more than the last snapshot, and
        twice as many as the state they make: a snapshot then at least halves it."""
        if self._logged - self._live < COMPACT_AFTER:
            return False
        return self._logged >= 2 * self._state.size()

    def _commit(self, queued: list[_Queued]) -> None:
        # A commit is atomic: of a task's rows in it, the last is all that counts.
        last = {item[0]: i for i, item in enumerate(queued) if type(item) is tuple}
        ops: list[Op] = []
        rows: list[tuple[Any, ...]] = []  # consecutive task rows: one "T" op
        for i, item in enumerate(queued):
            if type(item) is tuple:
                if last[item[0]] == i:
                    rows.append(item)
                continue
            if rows:
                ops.append(("T", rows))
                rows = []
            if type(item) is StoredGroup:
                ops += group_ops(item, _RECORD_LIMIT)
            elif type(item) is list:
                ops.append(item)
        if rows:
            ops.append(("T", rows))
        try:
            self._db.execute("BEGIN")
            changes = self._insert(ops)
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._log.error("could not journal {} change(s) to {}: {}", len(ops), self.path, exc)
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            return
        self._logged += changes
        for op in ops:
            self._state.apply(op)

    def _insert(self, ops: list[Op]) -> int:
        """Append `ops` as one row, or as rows of about `_RECORD_LIMIT` bytes when they
        are bigger; returns how many changes (groups, task rows, ends) they hold."""
        chunks: list[list[Op]] = [[]]
        size = changes = 0
        for op in ops:
            kind = op[0]
            count = len(op[1]) if kind == "T" else 1
            weight = len(op[4]) if kind == "g" else 128 * count  # a task row: ~100 bytes
            if size + weight > _RECORD_LIMIT and chunks[-1]:
                chunks.append([])
                size = 0
            chunks[-1].append(op)
            size += weight
            changes += count
        records = [_pack(chunk) for chunk in chunks]
        counts = [0] * (len(records) - 1) + [changes]  # the changes, on the last row
        self._db.executemany(
            "INSERT INTO log (count, ops) VALUES (?, ?)", zip(counts, records, strict=True)
        )
        return changes

    def _compact(self) -> None:
        """Replace the log with a snapshot of the state it makes, in one transaction."""
        try:
            ops = self._state.ops(_RECORD_LIMIT)
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM log")
            live = self._insert(ops)
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._log.error("could not compact the task journal {}: {}", self.path, exc)
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            self._live = self._logged  # try again after as many changes again
            return
        self._logged = self._live = live

    def _done(self, callbacks: list[Callable[[], None]]) -> None:
        if self._call_soon is None:
            _run_all(callbacks)
            return
        try:  # one wake-up of the loop for all of them
            self._call_soon(functools.partial(_run_all, callbacks))
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass


#: a task row (a `StoredTask`'s fields), a group, an op or a `when_durable` callback
_Queued = tuple[Any, ...] | StoredGroup | list[Any] | Callable[[], None]


def _replay(conn: sqlite3.Connection, path: str) -> LogState:
    """The state the log of `conn` makes."""
    state = LogState()
    for seq, blob in conn.execute("SELECT seq, ops FROM log ORDER BY seq"):
        for op in read_record(blob, path, seq) or ():
            state.apply(op)
    return state


def _read_v1(conn: sqlite3.Connection) -> LogState:
    """The state a journal of the first format (a row per task) holds."""
    state = LogState()
    for row in conn.execute(
        "SELECT group_id, body, status, submitter, goal_status FROM groups ORDER BY seq"
    ):
        for op in group_ops(StoredGroup(*row), _RECORD_LIMIT):
            state.apply(op)
    for row in conn.execute(
        "SELECT task_id, group_id, status, worker, attempts, result, error, "
        "start_time, end_time FROM tasks"
    ):
        state.put(row)
    return state


def _run_all(callbacks: list[Callable[[], None]]) -> None:
    for callback in callbacks:
        try:
            callback()
        except Exception:  # one waiter's bug must not keep the others waiting
            logger.exception("a task store callback failed")
