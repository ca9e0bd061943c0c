"""The task processor end to end: the tutorial, worker processes killed mid-run, failures."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import signal
import sys
from typing import Any

import pytest

from ceylon.task import (
    GoalStatus,
    TaskExecutionAgent,
    TaskManager,
    TaskMessage,
    TaskPlayGround,
    TaskStatus,
)
from ceylon.testing import Process

from ..conftest import BEAT, BEAT_FLAGS, ROOT, seconds, wait_until


@dataclasses.dataclass
class CustomTask(TaskMessage):
    """As in the tutorial: a subclass with required fields of its own."""

    task_type: str
    parameters: dict[str, Any]


def test_the_tutorial_example_runs_unmodified_and_achieves_its_goal() -> None:
    run = Process([sys.executable, "examples/task_processing.py"], cwd=ROOT,
                  env={"CEYLON_PORT": "0"})  # fmt: skip
    code = run.wait(timeout=seconds(60))
    output = run.output()
    assert code == 0, output
    assert "Goal achieved! System can stop while tasks continue." in output
    assert "Completed Tasks:" in output


async def test_results_failures_and_custom_tasks_in_process() -> None:
    async def work(task: TaskMessage) -> Any:
        if isinstance(task, CustomTask):
            return {"type": task.task_type, "echo": task.parameters}
        if task.name == "explode":
            raise ValueError("this task raises on purpose")
        return task.name.upper()

    playground = TaskPlayGround(port=0, max_retries=1)
    workers = [TaskExecutionAgent(f"w{i}", "processor", 2, work=work) for i in range(2)]
    custom = CustomTask(
        name="custom", required_role="processor", task_type="resize", parameters={"w": 10}
    )
    plain = TaskMessage(name="plain", required_role="processor")
    failing = TaskMessage(name="explode", required_role="processor")
    group = TaskManager.create_task_group("mixed", "", [custom, plain, failing])
    async with playground.play(workers=workers) as p:
        await p.assign_task_groups([group])
        await p.wait_for_completion(timeout=seconds(10))
        results = p.get_task_results()
        assert results[custom.task_id] == {"type": "resize", "echo": {"w": 10}}
        assert results[plain.task_id] == "PLAIN"
        assert failing.status is TaskStatus.FAILED
        assert "ValueError: this task raises on purpose" in p.get_task_errors()[failing.task_id]
        assert group.status is TaskStatus.FAILED
        done = p.get_completed_tasks()[plain.task_id]
        assert done.completed and done.assigned_to in ("w0", "w1")
        assert done.start_time is not None and done.end_time is not None
        assert done.start_time <= done.end_time
        stats = p.statistics()
        assert (stats.completed, stats.failed) == (2, 1)


async def test_a_role_nobody_has_waits_then_fails_after_the_deadline() -> None:
    playground = TaskPlayGround(port=0, role_timeout=0.5)
    orphan = TaskMessage(name="orphan", required_role="nobody")
    async with playground.play(workers=[TaskExecutionAgent("w", "processor")]) as p:
        await p.assign_task_groups([TaskManager.create_task_group("g", "", [orphan])])
        await p.wait_for_completion(timeout=seconds(5))
    assert orphan.status is TaskStatus.FAILED
    assert (
        "no worker with role 'nobody' joined within 0.5 s"
        in playground.get_task_errors()[orphan.task_id]
    )


async def test_a_goal_is_achieved_while_other_tasks_continue() -> None:
    from ceylon.task import TaskGroupGoal

    playground = TaskPlayGround(port=0)
    tasks = [TaskMessage(name=f"t{i}", duration=0.05 * i, required_role="p") for i in range(6)]
    goal = TaskGroupGoal("two", "", lambda groups, done: len(done) >= 2)
    group = TaskManager.create_task_group("g", "", tasks, goal=goal)
    async with playground.play(workers=[TaskExecutionAgent("w", "p", 6)]) as p:
        await p.assign_task_groups([group])
        async with asyncio.timeout(seconds(5)):
            await wait_until(lambda: goal.status is GoalStatus.ACHIEVED)
        assert group.status is TaskStatus.IN_PROGRESS  # the rest still run
        await p.wait_for_completion(timeout=seconds(5))
    assert group.status is TaskStatus.COMPLETED


def start_task_worker(spawn: Any, address: str, name: str) -> Process:
    worker = spawn(
        "-m", "ceylon", "worker", "--connect", address, "--agent",
        "ceylon.task:TaskExecutionAgent", "--role", "processor", "--name", name,
        "--option", "max_concurrent_tasks=10", *BEAT_FLAGS,
    )  # fmt: skip
    worker.wait_for_line(rf"^agent {name} connected", timeout=seconds(20))
    return worker


async def test_no_task_is_lost_when_worker_processes_are_killed(spawn: Any) -> None:
    playground = TaskPlayGround(port=0, **BEAT)
    tasks = [
        TaskMessage(name=f"t{i}", duration=0.1, required_role="processor") for i in range(2000)
    ]
    group = TaskManager.create_task_group("survivors", "", tasks)
    await playground.start()
    try:
        workers = {
            f"w{i}": await asyncio.to_thread(start_task_worker, spawn, playground.address, f"w{i}")
            for i in range(4)
        }
        await playground.wait_for_agents(count=4, role="processor", timeout=seconds(20))
        await playground.assign_task_groups([group])
        rng = random.Random(7)
        for kill in range(5):
            total = len(playground.get_completed_tasks())
            async with asyncio.timeout(seconds(30)):  # let some work happen between kills
                await wait_until(lambda t=total: len(playground.get_completed_tasks()) >= t + 100)
            assert len(playground.get_completed_tasks()) < 2000, "killed after the run"
            victim = rng.choice(sorted(workers))
            workers.pop(victim).signal(signal.SIGKILL)
            name = f"replacement{kill}"
            workers[name] = await asyncio.to_thread(
                start_task_worker, spawn, playground.address, name
            )
        await playground.wait_for_completion(timeout=seconds(60))
        completed = playground.get_completed_tasks()
        assert len(completed) == 2000 and not playground.get_failed_tasks()
        assert all(t.completed and t.status is TaskStatus.COMPLETED for t in completed.values())
        assert {t.task_id for t in tasks} == set(completed)
    finally:
        await playground.finish()


@pytest.mark.parametrize("plugin", ["tasks"])
def test_the_cli_playground_hosts_the_task_plugin(spawn: Any, plugin: str) -> None:
    playground = spawn("-m", "ceylon", "playground", "--port", "0", "--plugin", plugin)
    playground.wait_for_line(r"^listening on", timeout=seconds(20))
    bad = spawn("-m", "ceylon", "playground", "--port", "0", "--plugin", "nope")
    assert bad.wait(seconds(20)) != 0
    assert "unknown plugin 'nope'" in bad.output()


def test_tasks_run_hosts_a_playground_with_local_worker_processes(spawn: Any) -> None:
    run = spawn("-m", "ceylon", "tasks", "run", "tests.fixtures.task_groups:small",
                "--workers", "2")  # fmt: skip
    assert run.wait(seconds(60)) == 0, run.output()
    output = run.output()
    assert "60/60" in output and "completed, goal achieved" in output
    assert "Task statistics" in output


def test_tasks_run_submits_to_a_cli_playground_hosting_the_plugin(spawn: Any) -> None:
    playground = spawn("-m", "ceylon", "playground", "--port", "0", "--plugin", "tasks",
                       "--state", ":memory:")  # fmt: skip
    address = playground.wait_for_line(r"^listening on (\S+:\d+)", timeout=seconds(20)).group(1)
    for n in range(2):
        worker = spawn(
            "-m", "ceylon", "worker", "--connect", address, "--agent",
            "ceylon.task:TaskExecutionAgent", "--role", "processor", "--name", f"p{n}",
        )  # fmt: skip
        worker.wait_for_line(rf"^agent p{n} connected", timeout=seconds(20))
    run = spawn("-m", "ceylon", "tasks", "run", "tests.fixtures.task_groups:small",
                "--connect", address)  # fmt: skip
    assert run.wait(seconds(60)) == 0, run.output()
    assert "completed, goal achieved" in run.output()
    # `ceylon status` sees the workers and what the plugin did.
    status = spawn("-m", "ceylon", "status", "--connect", address, "--once", "--json")
    assert status.wait(seconds(30)) == 0, status.output()
    (line,) = [x for x in status.output().splitlines() if x.startswith("{")]
    view = json.loads(line)
    assert sorted(a["name"] for a in view["agents"]) == ["p0", "p1"]
    tasks = view["plugins"]["tasks"]
    assert (tasks["tasks"], tasks["completed"], tasks["failed"]) == (60, 60, 0)
    assert (tasks["workers"], tasks["running"], tasks["waiting"]) == (2, 0, 0)
    assert view["messages_routed"] >= 60  # every result came in through the playground
    table = spawn("-m", "ceylon", "status", "--connect", address, "--once")
    assert table.wait(seconds(30)) == 0, table.output()
    shown = table.output()
    assert "agents by role" in shown and "p0, p1" in shown


def test_tasks_run_writes_every_tasks_outcome_as_json(spawn: Any, tmp_path: Any) -> None:
    out = tmp_path / "results.json"
    run = spawn("-m", "ceylon", "tasks", "run", "tests.fixtures.task_groups:small",
                "--workers", "1", "--json", "--out", str(out))  # fmt: skip
    assert run.wait(seconds(60)) == 0, run.output()
    tasks = json.loads(out.read_text())["tasks"]
    assert len(tasks) == 60 and {t["status"] for t in tasks} == {"completed"}
    assert all(t["worker"] and t["error"] is None for t in tasks)
    printed = spawn("-m", "ceylon", "tasks", "run", "tests.fixtures.task_groups:small",
                    "--workers", "1", "--json")  # fmt: skip
    assert printed.wait(seconds(60)) == 0, printed.output()
    (line,) = [x for x in printed.output().splitlines() if x.startswith('{"tasks"')]
    assert len(json.loads(line)["tasks"]) == 60
