"""Tasks never hang: what cannot run fails at once, saying why; hung tasks time out."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from ceylon import BaseAgent, RemoteHandlerError, on
from ceylon.task import (
    GroupAccepted,
    SubmitGroup,
    TaskExecutionAgent,
    TaskManager,
    TaskMessage,
    TaskPlayGround,
)
from ceylon.testing import Process

from ..conftest import BEAT, BEAT_FLAGS, seconds
from ..fixtures.custom_tasks import ResizeTask, Shape


def start_worker(spawn: Any, address: str, name: str, *extra: str) -> Process:
    worker: Process = spawn(
        "-m", "ceylon", "worker", "--connect", address, "--agent",
        "ceylon.task:TaskExecutionAgent", "--role", "processor", "--name", name,
        *BEAT_FLAGS, *extra,
    )  # fmt: skip
    worker.wait_for_line(rf"^agent {name} connected", timeout=seconds(20))
    return worker


async def test_a_task_the_worker_cannot_decode_fails_at_once_saying_why(spawn: Any) -> None:
    playground = TaskPlayGround(port=0, **BEAT)
    await playground.start()
    try:
        # the worker process never imported the module of ResizeTask
        await asyncio.to_thread(start_worker, spawn, playground.address, "plain")
        await playground.wait_for_agents(count=1, timeout=seconds(20))
        tasks = [ResizeTask(name=f"r{i}", required_role="processor") for i in range(4)]
        group = TaskManager.create_task_group("resize", "", tasks)
        started = time.monotonic()
        await playground.assign_task_groups([group])
        await playground.wait_for_completion(timeout=seconds(2))
        assert time.monotonic() - started < seconds(2)
        errors = playground.get_task_errors()
        assert len(errors) == 4 and not playground.get_completed_tasks()
        error = next(iter(errors.values()))
        assert "cannot run a ResizeTask" in error and "--import" in error, error
    finally:
        await playground.finish()


async def test_a_worker_given_import_runs_the_custom_task(spawn: Any) -> None:
    playground = TaskPlayGround(port=0, **BEAT)
    await playground.start()
    try:
        await asyncio.to_thread(
            start_worker, spawn, playground.address, "knowing",
            "--import", "tests.fixtures.custom_tasks",
        )  # fmt: skip
        await playground.wait_for_agents(count=1, timeout=seconds(20))
        tasks = [ResizeTask(name="r", required_role="processor", shape=Shape.SQUARE)]
        await playground.assign_task_groups([TaskManager.create_task_group("g", "", tasks)])
        await playground.wait_for_completion(timeout=seconds(10))
        assert len(playground.get_completed_tasks()) == 1, playground.get_task_errors()
    finally:
        await playground.finish()


class Submitter(BaseAgent):
    @on(GroupAccepted)
    async def accepted(self, reply: GroupAccepted) -> None:
        pass


def cli_playground(spawn: Any, *extra: str) -> str:
    playground = spawn("-m", "ceylon", "playground", "--port", "0", "--plugin", "tasks",
                       "--state", ":memory:", *BEAT_FLAGS, *extra)  # fmt: skip
    match = playground.wait_for_line(r"^listening on (\S+:\d+)", timeout=seconds(20))
    return str(match.group(1))


async def test_a_group_the_playground_cannot_decode_is_refused_at_once(spawn: Any) -> None:
    address = await asyncio.to_thread(cli_playground, spawn)
    submitter = Submitter("submitter")
    await submitter.connect(address)
    try:
        tasks = [ResizeTask(name="r", required_role="processor")]
        started = time.monotonic()
        with pytest.raises(RemoteHandlerError) as refused:
            await submitter.ask("playground", SubmitGroup(1, "g", "", tasks))
        assert time.monotonic() - started < seconds(2)
        # it names the first type it could not build (the Shape inside the ResizeTask)
        assert "type Shape is not registered" in refused.value.message, refused.value
        # a group that fails validation is refused by the plugin itself
        plain = TaskMessage(name="t", required_role="processor")
        cycle = SubmitGroup(2, "g", "", [plain], dependencies={plain.task_id: [plain.task_id]})
        reply = await submitter.ask("playground", cycle)
        assert isinstance(reply, GroupAccepted)
    finally:
        await submitter.stop()


def test_tasks_run_reports_a_refused_group_at_once_and_import_fixes_it(spawn: Any) -> None:
    address = cli_playground(spawn)
    started = time.monotonic()
    run = spawn("-m", "ceylon", "tasks", "run", "tests.fixtures.custom_tasks:resize_groups",
                "--connect", address, "--timeout", "10")  # fmt: skip
    assert run.wait(seconds(20)) == 1, run.output()
    assert time.monotonic() - started < seconds(8)  # not the 10 s of --timeout
    assert "refused" in run.output() and "Shape is not registered" in run.output(), run.output()
    knowing = cli_playground(spawn, "--import", "tests.fixtures.custom_tasks")
    start_worker(spawn, knowing, "w", "--import", "tests.fixtures.custom_tasks")
    run = spawn("-m", "ceylon", "tasks", "run", "tests.fixtures.custom_tasks:resize_groups",
                "--connect", knowing, "--timeout", "30")  # fmt: skip
    assert run.wait(seconds(40)) == 0, run.output()


def test_an_import_that_fails_is_one_line_and_exit_2(spawn: Any) -> None:
    bad = spawn("-m", "ceylon", "playground", "--port", "0", "--import", "no_such_module_x")
    assert bad.wait(seconds(20)) == 2
    assert bad.output().strip().splitlines() == [
        "error: --import no_such_module_x: ModuleNotFoundError: No module named 'no_such_module_x'"
    ]


async def test_a_hung_task_is_cancelled_at_its_timeout_and_retried() -> None:
    attempts: list[str] = []

    async def hang(task: TaskMessage) -> Any:
        attempts.append(task.name)
        await asyncio.sleep(3600)  # a task that never ends by itself

    playground = TaskPlayGround(port=0, max_retries=1, task_timeout=seconds(0.3), **BEAT)
    worker = TaskExecutionAgent("w", "processor", 2, work=hang)
    own = TaskMessage(name="own", required_role="processor", timeout=seconds(0.2))
    grouped = TaskMessage(name="grouped", required_role="processor")
    default = TaskMessage(name="default", required_role="processor")
    first = TaskManager.create_task_group("g1", "", [own, grouped])
    first.task_timeout = seconds(0.25)
    second = TaskManager.create_task_group("g2", "", [default])
    async with playground.play(workers=[worker]):
        started = time.monotonic()
        await playground.assign_task_groups([first, second])
        await playground.wait_for_completion(timeout=seconds(5))
        elapsed = time.monotonic() - started
    errors = playground.get_task_errors()
    assert errors == {
        own.task_id: f"timed out after {seconds(0.2):g} s",
        grouped.task_id: f"timed out after {seconds(0.25):g} s",
        default.task_id: f"timed out after {seconds(0.3):g} s",
    }
    assert sorted(attempts) == ["default", "default", "grouped", "grouped", "own", "own"]
    assert elapsed < seconds(3)
    assert not worker._running  # nothing left running on the worker
