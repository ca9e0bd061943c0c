"""The task plugin journals its state: a playground SIGKILLed mid-run and started again on
the same journal finishes the work, each task's outcome recorded once."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from pathlib import Path
from typing import Any

from ceylon import BaseAgent, on
from ceylon.task import GroupAccepted, SubmitGroup, TaskMessage, TaskStatusUpdate
from ceylon.testing import Process, free_port

from ..conftest import BEAT_FLAGS, seconds, wait_until

TASKS = 200


class Submitter(BaseAgent):
    @on(GroupAccepted)
    async def _accepted(self, reply: GroupAccepted) -> None:
        pass

    @on(TaskStatusUpdate)
    async def _update(self, update: TaskStatusUpdate) -> None:
        pass


def counts(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as conn:  # a reader beside the playground's writer (WAL)
        rows = conn.execute("SELECT status, count(*) FROM tasks GROUP BY status").fetchall()
    return dict(rows)


def results(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT worker FROM tasks WHERE status='completed'")]


async def test_a_killed_playground_resumes_from_its_journal(spawn: Any, tmp_path: Path) -> None:
    db = tmp_path / "state" / "tasks.db"
    port = free_port()

    def playground() -> Process:
        child: Process = spawn(
            "-m", "ceylon", "playground", "--port", str(port), "--plugin", "tasks",
            "--state", str(db), "--lease", str(seconds(3)), *BEAT_FLAGS,
        )  # fmt: skip
        child.wait_for_line(r"^listening on ", timeout=seconds(20))
        return child

    first = await asyncio.to_thread(playground)
    assert f"task state journaled to {db}" in first.output()
    for n in range(2):
        worker = spawn(
            "-m", "ceylon", "worker", "--connect", f"127.0.0.1:{port}", "--agent",
            "ceylon.task:TaskExecutionAgent", "--role", "processor", "--name", f"w{n}",
            "--option", "max_concurrent_tasks=4", *BEAT_FLAGS,
        )  # fmt: skip
        await asyncio.to_thread(worker.wait_for_line, rf"^agent w{n} connected", seconds(20))
    submitter = Submitter("submitter")
    await submitter.connect(f"127.0.0.1:{port}")
    tasks = [TaskMessage(task_id=f"t{i:03}", name=f"t{i}", duration=0.02,
                         required_role="processor") for i in range(TASKS)]  # fmt: skip
    reply = await submitter.ask("playground", SubmitGroup(1, "journaled", "", tasks))
    assert isinstance(reply, GroupAccepted) and reply.error is None
    await submitter.stop()

    async with asyncio.timeout(seconds(30)):
        await wait_until(lambda: counts(db).get("completed", 0) >= TASKS // 4)
    first.signal(signal.SIGKILL)
    assert await asyncio.to_thread(first.wait, seconds(10)) == -signal.SIGKILL
    done_before = counts(db).get("completed", 0)
    assert 0 < done_before < TASKS, "killed after the run ended: nothing to resume"

    second = await asyncio.to_thread(playground)
    assert "resumed 1 group(s)" in second.output()  # said before it listens
    async with asyncio.timeout(seconds(60)):
        await wait_until(lambda: counts(db) == {"completed": TASKS})
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        (status,) = conn.execute("SELECT status FROM groups").fetchone()
    assert status == "completed"
    assert set(results(db)) <= {"w0", "w1"} and len(results(db)) == TASKS
