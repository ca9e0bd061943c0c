"""Finished task groups are forgotten, so that a playground's memory stays bounded.

The attack: many large groups for a role no worker has. With ``role_timeout`` they fail;
with ``keep_finished_groups`` only the newest stay held, and the rest are freed.
"""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
import weakref
from typing import Any

import pytest

import ceylon.task.plugin as task_plugin
from ceylon import BaseAgent, on
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

from ..conftest import BEAT_INTERVAL, BEAT_TIMEOUT, seconds, wait_until

GROUPS = 10
TASKS = 200


def orphan_group(i: int) -> Any:
    tasks = [
        TaskMessage(
            name=f"g{i}.t{j}", required_role="nobody-serves-this", metadata={"pad": "x" * 512}
        )
        for j in range(TASKS)
    ]
    return TaskManager.create_task_group(f"g{i}", "", tasks)


@pytest.fixture
def fast_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(task_plugin, "WATCH_INTERVAL", seconds(0.05))


async def test_groups_for_a_role_nobody_serves_fail_and_all_but_the_newest_are_freed(
    fast_watch: None,
) -> None:
    playground = TaskPlayGround(
        port=0,
        role_timeout=seconds(0.3),
        keep_finished_groups=2,
        heartbeat_interval=BEAT_INTERVAL,
        heartbeat_timeout=BEAT_TIMEOUT,
    )
    manager = playground.task_manager
    await playground.start()
    tracemalloc.start()
    try:
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        refs: list[weakref.ref[TaskMessage]] = []
        ids: list[str] = []
        for i in range(GROUPS):
            group = orphan_group(i)
            refs.append(weakref.ref(group.subtasks[0]))
            ids.append(group.task_id)
            await playground.assign_task_groups([group])
            del group
        assert len(manager.tasks) == GROUPS * TASKS
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
        await playground.wait_for_completion(timeout=seconds(10))
        async with asyncio.timeout(seconds(5)):  # the watcher's next turn
            await wait_until(lambda: playground.task_plugin.status()["groups forgotten"] >= 8)
        assert len(manager.task_groups) <= 2
        assert len(manager.tasks) <= 2 * TASKS
        assert len(manager.failed_tasks) == len(manager.errors) == len(manager.tasks)
        held = list(manager.task_groups)
        assert all(g in ids for g in held)
        for group_id in held:  # the newest ones still tell how they ended
            assert manager.task_groups[group_id].status is TaskStatus.FAILED
        assert "'nobody-serves-this'" in next(iter(playground.get_task_errors().values()))
        status = playground.task_plugin.status()
        assert (status["groups"], status["groups forgotten"]) == (len(held), GROUPS - len(held))
        gc.collect()
        assert sum(ref() is None for ref in refs) == GROUPS - len(held)
        after = tracemalloc.get_traced_memory()[0] - before
        assert grown > 1_000_000, grown  # 2,000 tasks of 512 bytes and more
        assert after < grown * 0.4, (after, grown)
        # a group forgotten is no longer known: waiting for it says so
        forgotten = next(g for g in ids if g not in held)
        with pytest.raises(KeyError, match="forgotten"):
            await playground.wait_for_completion(timeout=seconds(1), group=forgotten)
    finally:
        tracemalloc.stop()
        await playground.finish()


class Submitter(BaseAgent):
    def __init__(self) -> None:
        super().__init__("submitter", role="member")
        self.done: dict[str, TaskStatus] = {}

    @on(GroupAccepted)
    async def _accepted(self, reply: GroupAccepted) -> None:
        pass

    @on(GroupDone)
    async def _done(self, done: GroupDone) -> None:
        self.done[done.group_id] = done.status

    @on(TaskStatusUpdate)
    async def _update(self, update: TaskStatusUpdate) -> None:
        pass


async def test_submitted_groups_are_reported_before_they_are_forgotten(fast_watch: None) -> None:
    playground = TaskPlayGround(
        port=0,
        role_timeout=seconds(0.3),
        keep_finished_groups=1,
        heartbeat_interval=BEAT_INTERVAL,
        heartbeat_timeout=BEAT_TIMEOUT,
    )
    member = Submitter()
    async with playground.play(workers=[]):
        await member.connect(playground.address)
        try:
            accepted = []
            for i in range(5):
                tasks = [TaskMessage(name=f"s{i}.{j}", required_role="nobody") for j in range(50)]
                reply = await member.ask("task_playground", SubmitGroup(i, f"s{i}", "", tasks))
                assert reply.error is None
                accepted.append(reply.group_id)
            async with asyncio.timeout(seconds(10)):
                await wait_until(lambda: len(member.done) == 5)
                await wait_until(lambda: len(playground.task_manager.task_groups) <= 1)
            assert member.done == dict.fromkeys(accepted, TaskStatus.FAILED)
            assert len(playground.task_manager.tasks) <= 50
            assert not playground.task_plugin._watchers
        finally:
            await member.stop()


async def test_the_tutorial_reads_its_results_after_waiting() -> None:
    # defaults: nothing a short run sees is forgotten, even after the periodic check
    playground = TaskPlayGround(
        port=0, heartbeat_interval=BEAT_INTERVAL, heartbeat_timeout=BEAT_TIMEOUT
    )
    groups = [
        TaskManager.create_task_group(
            f"g{i}", "", [TaskMessage(name=f"t{i}.{j}", required_role="p") for j in range(3)]
        )
        for i in range(4)
    ]
    async with playground.play(workers=[TaskExecutionAgent("w", "p", 4)]):
        await playground.assign_task_groups(groups)
        await playground.wait_for_completion(timeout=seconds(10))
        playground.task_plugin.forget_finished(time.monotonic())
        assert len(playground.get_completed_tasks()) == 12
        assert len(playground.get_task_results()) == 12
        assert playground.task_plugin.status()["groups forgotten"] == 0
