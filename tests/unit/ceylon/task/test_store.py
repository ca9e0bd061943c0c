"""The task journal: both stores behave alike; the SQLite one survives a SIGKILL."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ceylon.task import sqlitestore
from ceylon.task.sqlitestore import SqliteTaskStore, read_state
from ceylon.task.store import (
    MemoryTaskStore,
    StoredGroup,
    StoredTask,
    StoreError,
    TaskStore,
)

from ....conftest import ROOT, seconds

Reopen = Callable[[TaskStore], TaskStore]


@pytest.fixture(params=["memory", "sqlite"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[TaskStore, Reopen]:
    if request.param == "memory":
        return MemoryTaskStore(), lambda store: store

    def reopen(store: TaskStore) -> TaskStore:
        store.close()
        return SqliteTaskStore(tmp_path / "tasks.db")

    return SqliteTaskStore(tmp_path / "tasks.db"), reopen


def test_the_state_written_is_the_state_loaded(stores: tuple[TaskStore, Reopen]) -> None:
    store, reopen = stores
    store.add_group(StoredGroup("g1", b"one", "pending", "alice"))
    store.add_group(StoredGroup("g2", b"two", "pending"))
    store.add_group(StoredGroup("g0", b"zero", "pending"))
    store.put_task(StoredTask("a", "g1", "in_progress", "w1", 1))
    store.put_task(StoredTask("a", "g1", "completed", "w1", 1, b"42", None, 1.0, 2.0))
    store.put_task(StoredTask("b", "g1", "in_progress", "w2", 1))
    store.put_task(StoredTask("b", "g1", "pending", "", 1))
    store.put_task(StoredTask("b", "g1", "in_progress", "w1", 2))
    store.put_task(StoredTask("c", "g1", "failed", "w2", 1, None, "boom"))
    store.put_task(StoredTask("d", "g2", "completed", "w2", 1))
    store.group_ended("g2", "completed", "achieved")
    store.forget_groups(["g2"])
    store.group_ended("g0", "failed", "failed")
    state = reopen(store).load()
    assert [(g.group_id, g.body, g.submitter, g.status) for g in state.groups] == [
        ("g1", b"one", "alice", "pending"),
        ("g0", b"zero", "", "failed"),
    ]
    assert state.tasks == {  # the last row of each task; "e" of g0 has none: pending
        "a": StoredTask("a", "g1", "completed", "w1", 1, b"42", None, 1.0, 2.0),
        "b": StoredTask("b", "g1", "in_progress", "w1", 2),
        "c": StoredTask("c", "g1", "failed", "w2", 1, None, "boom"),
    }


def test_a_callback_runs_once_what_came_before_it_is_committed(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    seen: list[object] = []
    done = threading.Event()
    store = SqliteTaskStore(db)
    try:
        store.add_group(StoredGroup("g", b"", "pending"))
        store.put_task(StoredTask("t", "g", "completed", "w", 1, b"r"))

        def check() -> None:
            # another connection sees the commit
            seen.append([t.status for t in read_state(db).tasks.values()])
            done.set()

        store.when_durable(check)
        assert done.wait(seconds(10))
        assert seen == [["completed"]]
    finally:
        store.close()


def test_callbacks_go_through_call_soon_when_given(tmp_path: Path) -> None:
    handed: list[Callable[[], None]] = []
    arrived = threading.Event()

    def call_soon(callback: Callable[[], None]) -> None:
        handed.append(callback)
        arrived.set()

    store = SqliteTaskStore(tmp_path / "tasks.db", call_soon=call_soon)
    ran: list[bool] = []
    store.when_durable(lambda: ran.append(True))
    assert arrived.wait(seconds(10))
    store.close()
    assert ran == []  # not run in the writer thread
    handed[0]()
    assert ran == [True]


def test_a_closed_store_refuses_writes_and_closing_twice_is_fine(tmp_path: Path) -> None:
    store = SqliteTaskStore(tmp_path / "tasks.db")
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.put_task(StoredTask("t", "g", "pending"))


def test_what_is_not_a_journal_is_refused_with_its_path(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError, match="junk.db: not a task journal"):
        SqliteTaskStore(junk)
    newer = tmp_path / "newer.db"
    with sqlite3.connect(newer) as conn:
        conn.execute("PRAGMA user_version=99")
    with pytest.raises(StoreError, match="journal format 99 is newer"):
        SqliteTaskStore(newer)


def test_read_state_names_a_missing_or_foreign_file(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="nothing.db: no such task journal"):
        read_state(tmp_path / "nothing.db")
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(StoreError, match="other.db: not a task journal"):
        read_state(other)


_V1_SCHEMA = """
CREATE TABLE groups (seq INTEGER PRIMARY KEY AUTOINCREMENT, group_id TEXT UNIQUE NOT NULL,
    body BLOB NOT NULL, status TEXT NOT NULL, submitter TEXT NOT NULL, goal_status TEXT NOT NULL);
CREATE TABLE tasks (task_id TEXT PRIMARY KEY, group_id TEXT NOT NULL, status TEXT NOT NULL,
    worker TEXT NOT NULL DEFAULT '', attempts INTEGER NOT NULL DEFAULT 0, result BLOB,
    error TEXT, start_time REAL, end_time REAL);
PRAGMA user_version=1;
"""


def test_a_journal_of_the_first_format_is_converted_when_opened(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    with sqlite3.connect(db) as conn:
        conn.executescript(_V1_SCHEMA)
        conn.execute("INSERT INTO groups (group_id, body, status, submitter, goal_status) "
                     "VALUES ('g2', x'02', 'pending', 's', ''), "
                     "('g1', x'01', 'completed', '', 'achieved')")  # fmt: skip
        conn.execute(
            "INSERT INTO tasks VALUES ('a', 'g2', 'completed', 'w', 1, x'2a', NULL, "
            "1.0, 2.0), ('b', 'g2', 'in_progress', 'w', 2, NULL, NULL, NULL, NULL)"
        )
    assert read_state(db).groups[0].group_id == "g2"  # readable as it is, too
    store = SqliteTaskStore(db)
    store.put_task(StoredTask("b", "g2", "completed", "w", 2, b"r"))
    store.close()
    state = read_state(db)
    assert [(g.group_id, g.body, g.status, g.submitter) for g in state.groups] == [
        ("g2", b"\x02", "pending", "s"),
        ("g1", b"\x01", "completed", ""),
    ]
    assert state.tasks == {
        "a": StoredTask("a", "g2", "completed", "w", 1, b"*", None, 1.0, 2.0),
        "b": StoredTask("b", "g2", "completed", "w", 2, b"r"),
    }
    with sqlite3.connect(db) as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
        assert conn.execute("PRAGMA user_version").fetchone() == (2,)
    assert tables - {"sqlite_sequence"} == {"log"}


def test_a_long_log_is_compacted_into_the_state_it_makes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlitestore, "COMPACT_AFTER", 100)
    db = tmp_path / "tasks.db"
    store = SqliteTaskStore(db)
    reference = MemoryTaskStore()
    done = threading.Event()
    for n in range(40):  # commits of 20 rewrites of 10 tasks; 3 groups are kept
        for target in (store, reference):
            target.add_group(StoredGroup(f"g{n}", b"body" * n, "pending"))
            for i in range(20):
                target.put_task(StoredTask(f"g{n}-t{i % 10}", f"g{n}", "in_progress", "w", i))
            target.forget_groups([f"g{n - 3}"])
        done.clear()
        store.when_durable(done.set)
        assert done.wait(seconds(10))
    with sqlite3.connect(db) as conn:
        logged = conn.execute("SELECT sum(count) FROM log").fetchone()[0]
    store.close()
    assert logged <= 100 + 22  # compacted: a fraction of the 880 written
    assert read_state(db) == reference.load()


def test_a_record_that_is_not_the_journals_is_skipped_and_the_rest_read(
    tmp_path: Path,
) -> None:
    db = tmp_path / "tasks.db"
    store = SqliteTaskStore(db)
    store.add_group(StoredGroup("g", b"", "pending"))
    store.close()
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO log (count, ops) VALUES (1, x'c1'), (1, ?)",
                     (msgpack.packb([["t", "x"]]),))  # fmt: skip
    store = SqliteTaskStore(db)
    store.put_task(StoredTask("t", "g", "completed", "w", 1))
    store.close()
    state = read_state(db)
    assert [g.group_id for g in state.groups] == ["g"]
    assert state.tasks == {"t": StoredTask("t", "g", "completed", "w", 1)}


def test_the_directory_is_made_and_wal_is_on(tmp_path: Path) -> None:
    store = SqliteTaskStore(tmp_path / "a" / "b" / "tasks.db")
    store.close()
    with sqlite3.connect(tmp_path / "a" / "b" / "tasks.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_writes_keep_up_with_tens_of_thousands_of_tasks_a_second(tmp_path: Path) -> None:
    store = SqliteTaskStore(tmp_path / "tasks.db")
    count = 20_000
    ids = [f"t{i}" for i in range(count)]
    done = threading.Event()
    started = time.perf_counter()
    store.add_group(StoredGroup("g", b"", "pending"))
    for task_id in ids:
        store.put_task(StoredTask(task_id, "g", "in_progress", "w", 1))
        store.put_task(StoredTask(task_id, "g", "completed", "w", 1, b"r"))
    store.when_durable(done.set)
    assert done.wait(seconds(30))
    rate = count / (time.perf_counter() - started)
    store.close()
    print(f"{rate:,.0f} tasks/s journaled (started + ended, committed)")
    assert rate > 10_000


def test_a_journal_killed_while_writing_opens_cleanly(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    durable: set[str] = set()
    for _ in range(3):
        writer = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "fixtures" / "store_writer.py"), str(db)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        try:
            assert writer.stdout is not None
            for _ in range(20):  # a few batches in, while it keeps writing
                line = writer.stdout.readline()
                assert line.startswith("durable "), line
                durable.add(line.split()[1])
            writer.send_signal(signal.SIGKILL)
        finally:
            writer.kill()
            writer.wait(seconds(10))
            if writer.stdout is not None:
                writer.stdout.close()
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        store = SqliteTaskStore(db)
        state = store.load()
        store.close()
        assert durable <= {g.group_id for g in state.groups}
        for group in durable:  # each durable group's tasks are all recorded, complete
            assert state.tasks[f"{group}-t49"].status == "completed"


# -- what is written in batches is what was written, call by call ----------------------


def _calls() -> st.SearchStrategy[list[tuple[str, Any]]]:
    tasks = {"a": "g1", "b": "g1", "c": "g2"}
    group = st.sampled_from(["g1", "g2"])
    times = st.none() | st.floats(allow_nan=False)  # a NaN is never equal to itself
    task = st.sampled_from(sorted(tasks)).flatmap(
        lambda t: st.builds(
            StoredTask, st.just(t), st.just(tasks[t]),
            st.sampled_from(["pending", "in_progress", "completed"]),
            st.sampled_from(["", "w1"]), st.integers(0, 3), st.sampled_from([None, b"r"]),
            st.sampled_from([None, "boom"]), times, times,
        )
    )  # fmt: skip
    call = st.one_of(
        group.map(lambda g: ("add_group", StoredGroup(g, g.encode(), "pending", "s"))),
        task.map(lambda t: ("put_task", t)),
        st.tuples(group, st.sampled_from(["completed", "failed"])).map(
            lambda a: ("group_ended", a)
        ),
        group.map(lambda g: ("forget_groups", [g])),
    )
    return st.lists(call, max_size=25)


def _make(store: TaskStore, calls: list[tuple[str, Any]]) -> None:
    for name, arg in calls:
        if name == "group_ended":
            store.group_ended(*arg)
        else:
            getattr(store, name)(arg)


@settings(max_examples=150, deadline=None)
@given(calls=_calls())
def test_the_file_holds_what_the_calls_made_however_they_were_batched(
    calls: list[tuple[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    reference = MemoryTaskStore()
    _make(reference, calls)
    path = tmp_path_factory.mktemp("batched") / "tasks.db"
    store = SqliteTaskStore(path)
    with store._lock:  # the writer waits: every call lands in the same transaction
        _make(store, calls)
    store.close()
    loaded = SqliteTaskStore(path)
    got = loaded.load()
    loaded.close()
    expected = reference.load()
    # rows of forgotten groups are deleted with them (and the caller writes none after)
    live = {g.group_id for g in expected.groups}
    expected.tasks = {t: row for t, row in expected.tasks.items() if row.group_id in live}
    got.tasks = {t: row for t, row in got.tasks.items() if row.group_id in live}
    assert got == expected


def test_the_sqlite_store_is_still_importable_from_where_it_was() -> None:
    from ceylon.task import store

    assert store.SqliteTaskStore is SqliteTaskStore
