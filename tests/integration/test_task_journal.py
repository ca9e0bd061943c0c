"""The task plugin journals its state. A playground SIGKILLed three times mid-run (2,000
tasks, 4 worker processes), each time started again on the same journal, finishes the
work with each task's outcome recorded once; its submitter (``ceylon tasks run
--connect``) reconnects and exits 0 with the full count; ``ceylon tasks list|show|cancel``
manage the groups of the running playground."""

from __future__ import annotations

import asyncio
import collections
import json
import random
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

from ceylon import BaseAgent, on
from ceylon.task import GroupAccepted, SubmitGroup, TaskMessage, TaskStatusUpdate
from ceylon.task.sqlitestore import read_state
from ceylon.task.store import StoreError
from ceylon.testing import Process, free_port

from ..conftest import BEAT_FLAGS, seconds, wait_until
from ..fixtures.task_workers import digest

TASKS = 2000  # tests.fixtures.task_groups:journaled
KILLS = 3


class Submitter(BaseAgent):
    @on(GroupAccepted)
    async def _accepted(self, reply: GroupAccepted) -> None:
        pass

    @on(TaskStatusUpdate)
    async def _update(self, update: TaskStatusUpdate) -> None:
        pass


def counts(db: Path) -> dict[str, int]:
    try:  # a reader beside the playground's writer (WAL)
        state = read_state(db)
    except StoreError:  # not made yet
        return {}
    return dict(collections.Counter(task.status for task in state.tasks.values()))


def journaling_playground(spawn: Any, port: int, db: Path, *, lease: float) -> Process:
    """A task playground process on `port` journaling to `db`, once it listens."""
    child: Process = spawn(
        "-m", "ceylon", "playground", "--port", str(port), "--plugin", "tasks",
        "--state", str(db), "--lease", str(lease), *BEAT_FLAGS,
    )  # fmt: skip
    child.wait_for_line(r"^listening on ", timeout=seconds(20))
    return child


def last_json(output: str) -> Any:
    """The JSON a command printed last (its log lines come before)."""
    return json.loads(output.strip().splitlines()[-1])


async def test_a_killed_playground_resumes_from_its_journal(spawn: Any, tmp_path: Path) -> None:
    db = tmp_path / "state" / "tasks.db"
    port = free_port()
    where = f"127.0.0.1:{port}"

    def playground() -> Process:
        return journaling_playground(spawn, port, db, lease=seconds(3))

    def ceylon(*args: str) -> tuple[int, str]:
        run: Process = spawn("-m", "ceylon", *args)
        code = run.wait(seconds(30))
        return code, run.output()

    current = await asyncio.to_thread(playground)
    assert f"task state journaled to {db}" in current.output()
    for n in range(4):
        worker = spawn(
            "-m", "ceylon", "worker", "--connect", where, "--agent",
            "tests.fixtures.task_workers:Digester", "--role", "processor", "--name", f"w{n}",
            "--option", "max_concurrent_tasks=4", *BEAT_FLAGS,
        )  # fmt: skip
        await asyncio.to_thread(worker.wait_for_line, rf"^agent w{n} connected", seconds(20))
    submitter = spawn("-m", "ceylon", "tasks", "run", "tests.fixtures.task_groups:journaled",
                      "--connect", where, "--json", "--timeout", str(seconds(120)))  # fmt: skip

    rng = random.Random()
    for kill in range(KILLS):  # at a random moment of each quarter of the run
        at = int(TASKS * (kill + rng.random()) / (KILLS + 1))
        async with asyncio.timeout(seconds(60)):
            await wait_until(lambda at=at: db.exists() and counts(db).get("completed", 0) >= at)
        current.signal(signal.SIGKILL)
        assert await asyncio.to_thread(current.wait, seconds(10)) == -signal.SIGKILL
        assert counts(db).get("completed", 0) < TASKS, "killed after the run ended"
        current = await asyncio.to_thread(playground)
        assert "resumed 1 group(s)" in current.output()  # said before it listens

    assert await asyncio.to_thread(submitter.wait, seconds(120)) == 0, submitter.output()
    report = last_json(submitter.output())
    assert len(report["tasks"]) == TASKS
    assert all(t["status"] == "completed" for t in report["tasks"])
    # the results a run without faults gives (a task's result is a digest of its name)
    assert {t["name"]: t["result"] for t in report["tasks"]} == {
        f"j{i:04}": digest(f"j{i:04}") for i in range(TASKS)
    }
    assert counts(db) == {"completed": TASKS}  # each outcome recorded once, none lost
    print(f"{TASKS} tasks, {KILLS} playground kills: {counts(db)}")
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    state = read_state(db)
    assert [group.status for group in state.groups] == ["completed"]
    workers = {task.worker for task in state.tasks.values()}
    assert workers <= {"w0", "w1", "w2", "w3"}

    # a re-run with --resume submits nothing: the group is there, done
    code, out = await asyncio.to_thread(
        ceylon, "tasks", "run", "tests.fixtures.task_groups:journaled", "--connect", where,
        "--resume",
    )  # fmt: skip
    assert code == 0 and "resumed 1 group(s)" in out, out
    assert counts(db) == {"completed": TASKS}

    code, out = await asyncio.to_thread(ceylon, "tasks", "list", "--connect", where, "--json")
    assert code == 0, out
    (group,) = last_json(out)["groups"]
    assert (group["name"], group["status"], group["completed"]) == ("journaled", "completed", TASKS)
    code, out = await asyncio.to_thread(
        ceylon, "tasks", "show", "journaled", "--connect", where, "--json"
    )
    assert code == 0 and len(last_json(out)["tasks"]) == TASKS, out

    # cancel: a group for a role nobody serves ends at once, its tasks failed, journaled
    owner = Submitter("owner")
    await owner.connect(where)
    try:
        waiting = [TaskMessage(task_id=f"x{i}", name=f"x{i}", required_role="nobody")
                   for i in range(3)]  # fmt: skip
        reply = await owner.ask("playground", SubmitGroup(1, "stuck", "", waiting))
        assert isinstance(reply, GroupAccepted) and reply.error is None
    finally:
        await owner.stop()
    code, out = await asyncio.to_thread(ceylon, "tasks", "cancel", "stuck", "--connect", where)
    assert code == 0 and "failed" in out, out
    code, out = await asyncio.to_thread(
        ceylon, "tasks", "show", reply.group_id, "--connect", where, "--json"
    )
    shown = last_json(out)
    assert shown["groups"][0]["status"] == "failed"
    assert {t["error"] for t in shown["tasks"]} == {"cancelled by tasks-cancel"}
    async with asyncio.timeout(seconds(10)):
        await wait_until(lambda: counts(db).get("failed", 0) == 3)
    code, out = await asyncio.to_thread(ceylon, "tasks", "cancel", "nothing", "--connect", where)
    assert code == 1 and "no task group 'nothing'" in out, out


async def test_an_outcome_reached_while_the_playground_is_down_is_delivered_after(
    spawn: Any, tmp_path: Path
) -> None:
    db = tmp_path / "tasks.db"
    port = free_port()
    where = f"127.0.0.1:{port}"

    def playground() -> Process:
        return journaling_playground(spawn, port, db, lease=seconds(10))

    first = await asyncio.to_thread(playground)
    worker = spawn(
        "-m", "ceylon", "worker", "--connect", where, "--agent",
        "tests.fixtures.task_workers:AnnouncingDigester", "--role", "processor", "--name", "w0",
        "--option", "max_concurrent_tasks=3", *BEAT_FLAGS,
    )  # fmt: skip
    await asyncio.to_thread(worker.wait_for_line, r"^agent w0 connected", seconds(20))
    submitter = spawn("-m", "ceylon", "tasks", "run", "tests.fixtures.task_groups:held",
                      "--connect", where, "--json", "--timeout", str(seconds(60)))  # fmt: skip
    # all three reached the worker, and are journaled as handed out
    await asyncio.to_thread(worker.wait_for_lines, [r"^started h\d"] * 3, seconds(20))
    async with asyncio.timeout(seconds(20)):
        await wait_until(lambda: db.exists() and counts(db).get("in_progress", 0) == 3)
    first.signal(signal.SIGKILL)
    assert await asyncio.to_thread(first.wait, seconds(10)) == -signal.SIGKILL
    killed_at = time.time()

    # the worker finishes its three tasks with nobody to tell, and keeps the outcomes
    waits = [r"could not report task \S+ yet"] * 3
    await asyncio.to_thread(worker.wait_for_lines, waits, seconds(20))
    await asyncio.to_thread(playground)
    await asyncio.to_thread(
        worker.wait_for_line, r"reconnected: 0 task\(s\) still running, 3 outcome", seconds(20)
    )
    assert await asyncio.to_thread(submitter.wait, seconds(60)) == 0, submitter.output()
    report = last_json(submitter.output())
    assert {t["name"]: t["result"] for t in report["tasks"]} == {
        f"h{i}": digest(f"h{i}") for i in range(3)
    }
    rows = [(t.status, t.worker, t.start_time, t.attempts) for t in read_state(db).tasks.values()]
    # recorded once each, from the run that started before the kill: nothing ran twice
    assert [(s, w, a) for s, w, _, a in rows] == [("completed", "w0", 1)] * 3, rows
    assert all(started is not None and started < killed_at for _, _, started, _ in rows), rows
