"""Members that know the token cannot mislead the task plugin or its workers.

A worker cannot take more than `max_worker_slots` tasks at once, whatever it declares; a
group that could never end is refused (or what it forged is reset); a worker runs only
what its playground hands it, never beyond its capacity; waiting for one group does not
wait for the others.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from ceylon import BaseAgent, RemoteHandlerError, on
from ceylon.task import (
    GroupAccepted,
    GroupDone,
    SubmitGroup,
    TaskExecutionAgent,
    TaskManager,
    TaskMessage,
    TaskPlayGround,
    TaskStatus,
    TaskStatusUpdate,
)
from ceylon.testing import Process

from ..conftest import BEAT_FLAGS, BEAT_INTERVAL, BEAT_TIMEOUT, seconds, wait_until


def start_worker(spawn: Any, address: str, name: str, capacity: int) -> Process:
    worker: Process = spawn(
        "-m", "ceylon", "worker", "--connect", address, "--agent",
        "ceylon.task:TaskExecutionAgent", "--role", "processor", "--name", name,
        "--option", f"max_concurrent_tasks={capacity}", *BEAT_FLAGS,
    )  # fmt: skip
    worker.wait_for_line(rf"^agent {name} connected", timeout=seconds(20))
    return worker


class Member(BaseAgent):
    """Any member of the workspace: it submits groups, or sends tasks where it likes."""

    def __init__(self, name: str) -> None:
        super().__init__(name, role="member")
        self.updates: list[TaskStatusUpdate] = []
        self.done: dict[str, TaskStatus] = {}

    @on(GroupAccepted)
    async def _accepted(self, reply: GroupAccepted) -> None:
        pass

    @on(TaskStatusUpdate)
    async def _update(self, update: TaskStatusUpdate) -> None:
        self.updates.append(update)

    @on(GroupDone)
    async def _done(self, done: GroupDone) -> None:
        self.done[done.group_id] = done.status


async def test_a_greedy_worker_process_gets_at_most_64_tasks_at_once(spawn: Any) -> None:
    playground = TaskPlayGround(
        port=0, heartbeat_interval=BEAT_INTERVAL, heartbeat_timeout=BEAT_TIMEOUT
    )
    await playground.start()
    try:
        await asyncio.to_thread(start_worker, spawn, playground.address, "greedy", 10**6)
        await asyncio.to_thread(start_worker, spawn, playground.address, "honest", 2)
        await playground.wait_for_agents(count=2, role="processor", timeout=seconds(20))
        plugin = playground.task_plugin
        slots = {plugin._names[w]: s for w, s in plugin.assigner.workers.items()}
        assert slots["greedy"].capacity == 64 and slots["honest"].capacity == 2
        tasks = [TaskMessage(name=f"t{i}", duration=0.1, required_role="processor")
                 for i in range(500)]  # fmt: skip
        await playground.assign_task_groups([TaskManager.create_task_group("g", "", tasks)])
        assert len(slots["greedy"].running) == 64  # not 498
        most = 0

        def watch() -> bool:
            nonlocal most
            most = max(most, len(slots["greedy"].running))
            return len(playground.get_completed_tasks()) == 500

        async with asyncio.timeout(seconds(30)):
            await wait_until(watch)
        assert most == 64
        assert {t.assigned_to for t in tasks} == {"greedy", "honest"}
        assert not playground.get_failed_tasks()
    finally:
        await playground.finish()


async def test_a_worker_ignores_tasks_sent_by_another_member(spawn: Any) -> None:
    playground = TaskPlayGround(
        port=0, heartbeat_interval=BEAT_INTERVAL, heartbeat_timeout=BEAT_TIMEOUT
    )
    await playground.start()
    rogue = Member("rogue")
    try:
        worker = await asyncio.to_thread(start_worker, spawn, playground.address, "w", 2)
        await playground.wait_for_agents(count=1, role="processor", timeout=seconds(20))
        await rogue.connect(playground.address)
        for i in range(2000):
            await rogue.send_message("w", TaskMessage(name=f"rogue{i}", required_role="processor"))
        # An ask goes behind the sender's earlier messages: once it is answered (the
        # handler returns nothing), the worker has handled all 2,000.
        with pytest.raises(RemoteHandlerError):
            await rogue.ask("w", TaskMessage(name="last", required_role="processor"))
        # the worker still serves its playground
        own = [TaskMessage(name=f"own{i}", required_role="processor") for i in range(6)]
        group = TaskManager.create_task_group("own", "", own)
        await playground.assign_task_groups([group])
        await playground.wait_for_completion(timeout=seconds(10))
        assert len(playground.get_completed_tasks()) == 6
        await asyncio.sleep(seconds(0.3))  # what it ran would have been reported by now
        assert rogue.updates == []  # it ran none of them
        warned = [x for x in worker.output().splitlines() if "ignoring a task from rogue" in x]
        assert len(warned) == 1, worker.output()  # once per sender, not 2,001 times
    finally:
        await rogue.stop()
        await playground.finish()


async def test_a_worker_never_runs_more_than_its_capacity() -> None:
    # The playground sends no more than the capacity; if it did (say around a
    # reconnect), the worker queues a bounded few in order and refuses the rest.
    running = 0
    most = 0
    gate = asyncio.Event()
    order: list[str] = []

    async def work(task: TaskMessage) -> Any:
        nonlocal running, most
        running += 1
        most = max(most, running)
        order.append(task.name)
        await gate.wait()
        running -= 1
        return task.name

    playground = TaskPlayGround(
        port=0, heartbeat_interval=BEAT_INTERVAL, heartbeat_timeout=BEAT_TIMEOUT
    )
    worker = TaskExecutionAgent("w", "processor", 2, work=work)
    async with playground.play(workers=[worker]):
        for i in range(10):  # straight from the playground, past the plugin's books
            await playground.send_message("w", TaskMessage(name=f"t{i}", required_role="p"))
        async with asyncio.timeout(seconds(5)):  # (a started job runs a loop turn later)
            await wait_until(lambda: worker.tasks_refused == 6 and running == 2)
        assert (running, len(worker._backlog)) == (2, 2)
        gate.set()
        async with asyncio.timeout(seconds(5)):
            await wait_until(lambda: worker.tasks_done == 4)
    assert most == 2 and order == ["t0", "t1", "t2", "t3"]


async def test_groups_that_could_never_end_are_refused_over_the_wire(spawn: Any) -> None:
    cli = spawn("-m", "ceylon", "playground", "--port", "0", "--plugin", "tasks",
                "--state", ":memory:", *BEAT_FLAGS)  # fmt: skip
    match = await asyncio.to_thread(
        cli.wait_for_line, r"^listening on (\S+:\d+)", timeout=seconds(20)
    )
    address = match.group(1)
    await asyncio.to_thread(start_worker, spawn, address, "w", 2)
    owner = Member("owner")
    await owner.connect(address)
    try:

        async def submit(request: SubmitGroup) -> GroupAccepted:
            reply = await owner.ask("playground", request, timeout=seconds(10))
            assert isinstance(reply, GroupAccepted)
            return reply

        a = TaskMessage(task_id="a", name="a", required_role="processor")
        b = TaskMessage(task_id="b", name="b", required_role="processor")
        reply = await submit(SubmitGroup(1, "cyclic", "", [a, b], {"a": ["b"], "b": ["a"]}))
        assert reply.error and not reply.group_id
        assert re.search(r"cycle '(a|b)' -> '(a|b)' -> '(a|b)'", reply.error), reply.error
        reply = await submit(SubmitGroup(2, "selfish", "", [a], {"a": ["a"]}))
        assert reply.error == "task group 'selfish': task 'a' depends on itself"
        reply = await submit(SubmitGroup(3, "lost", "", [a], {"a": ["elsewhere"]}))
        assert reply.error and "'elsewhere'" in reply.error
        reply = await submit(SubmitGroup(4, "orphan", "", [a], depends_on=["no-such-group"]))
        assert reply.error and "'no-such-group'" in reply.error
        # a refused group left nothing behind: the same ids are accepted afterwards
        forged = [
            TaskMessage(task_id=t, name=t, required_role="processor", status=TaskStatus.COMPLETED,
                        completed=True, result="forged", assigned_to="nobody")
            for t in ("a", "b")
        ]  # fmt: skip
        reply = await submit(SubmitGroup(5, "forged", "", forged, {"b": ["a"]}))
        assert reply.error is None and reply.group_id
        async with asyncio.timeout(seconds(10)):  # it runs: it does not hang for ever
            await wait_until(lambda: reply.group_id in owner.done)
        assert owner.done[reply.group_id] is TaskStatus.COMPLETED
        assert [(u.task_id, u.status, u.worker, u.result) for u in owner.updates] == [
            ("a", TaskStatus.COMPLETED, "w", None),
            ("b", TaskStatus.COMPLETED, "w", None),
        ]
    finally:
        await owner.stop()


async def test_waiting_for_one_group_does_not_wait_for_a_stuck_one() -> None:
    playground = TaskPlayGround(
        port=0, heartbeat_interval=BEAT_INTERVAL, heartbeat_timeout=BEAT_TIMEOUT
    )
    mine = TaskManager.create_task_group(
        "mine", "", [TaskMessage(name=f"m{i}", required_role="processor") for i in range(3)]
    )
    stuck = TaskManager.create_task_group(
        "stuck", "", [TaskMessage(name="s", required_role="nobody-serves-this")]
    )
    p = playground
    async with playground.play(workers=[TaskExecutionAgent("w", "processor", 2)]):
        await p.assign_task_groups([stuck, mine])
        await p.wait_for_completion(timeout=seconds(5), group=mine)
        assert mine.status is TaskStatus.COMPLETED
        assert stuck.status is TaskStatus.PENDING
        with pytest.raises(TimeoutError):
            await p.wait_for_completion(timeout=seconds(0.3))  # all: the stuck one too
        with pytest.raises(TimeoutError):
            await p.wait_for_completion(timeout=seconds(0.3), group=stuck.task_id)
        with pytest.raises(KeyError):
            await p.wait_for_completion(timeout=seconds(1), group="never-given")


async def test_a_submitter_hears_of_tasks_failed_by_a_missing_role_or_an_upstream() -> None:
    # Tasks no worker reported on (failed by role_timeout, or because the group they
    # depend on failed) still end for the member that submitted them.
    playground = TaskPlayGround(
        port=0,
        role_timeout=seconds(0.3),
        heartbeat_interval=BEAT_INTERVAL,
        heartbeat_timeout=BEAT_TIMEOUT,
    )
    owner = Member("owner")
    async with playground.play(workers=[TaskExecutionAgent("w", "processor", 2)]):
        await owner.connect(playground.address)
        try:
            up = TaskMessage(name="up", required_role="nobody")
            down = TaskMessage(name="down", required_role="processor")
            first = await owner.ask("task_playground", SubmitGroup(1, "up", "", [up]))
            second = await owner.ask(
                "task_playground", SubmitGroup(2, "down", "", [down], depends_on=[first.group_id])
            )
            assert first.error is None and second.error is None
            async with asyncio.timeout(seconds(10)):
                await wait_until(lambda: len(owner.done) == 2)
            assert owner.done == {
                first.group_id: TaskStatus.FAILED,
                second.group_id: TaskStatus.FAILED,
            }
            errors = {u.task_id: u.error for u in owner.updates}
            assert "'nobody'" in (errors[up.task_id] or "")
            assert errors[down.task_id] == "group 'up' failed"
        finally:
            await owner.stop()
