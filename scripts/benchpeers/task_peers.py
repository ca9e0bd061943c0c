"""Benchmark peer for the task processor: a task playground that times a run.

    python scripts/benchpeers/task_peers.py --tasks N --duration S --workers W [--state DB]
    python scripts/benchpeers/task_peers.py --restart N --state DB

It listens (printing ``listening on HOST:PORT``), waits for W task workers, runs N tasks of
S seconds each in one group, and prints ``result {json}`` with tasks/s and the makespan
(with ``--state``, journaled, the last outcome committed before the clock stops).

``--restart N`` times a resume instead: it journals N tasks nobody serves, finishes, then
starts a new playground on that journal and times it until an in-process worker that
joins it receives its first task.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from loguru import logger

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import transport  # noqa: E402
from ceylon.task import (  # noqa: E402
    TaskExecutionAgent,
    TaskManager,
    TaskMessage,
    TaskPlayGround,
)


async def durable(playground: TaskPlayGround) -> None:
    """Until everything journaled so far is committed."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    playground.task_plugin.journal.store.when_durable(lambda: done.set_result(None))
    await done


class FirstTask(TaskExecutionAgent):
    def __init__(self) -> None:
        super().__init__("first", "processor", 1)
        self.got = asyncio.Event()

    async def execute_task(self, task: TaskMessage) -> None:
        self.got.set()


async def restart(args: argparse.Namespace) -> None:
    tasks = [TaskMessage(name=f"t{i}", required_role="processor") for i in range(args.restart)]
    playground = TaskPlayGround(name="bench", port=0, state=args.state)
    await playground.start()
    print(f"listening on {playground.address}", flush=True)  # what the bench waits for
    for n in range(0, len(tasks), 1000):  # in groups of 1,000, as a user submits them
        group = TaskManager.create_task_group(f"g{n}", "", tasks[n : n + 1000])
        await playground.assign_task_groups([group])
    await durable(playground)
    await playground.finish()
    started = time.perf_counter()
    resumed = TaskPlayGround(name="bench", port=0, state=args.state)
    await resumed.start()
    worker = FirstTask()
    await worker.connect(resumed.address)
    await asyncio.wait_for(worker.got.wait(), 60)
    elapsed = time.perf_counter() - started
    print("result " + json.dumps({"first_assignment_s": elapsed, "tasks": args.restart}),
          flush=True)  # fmt: skip
    await worker.stop()
    await resumed.finish()


async def main(args: argparse.Namespace) -> None:
    if args.restart:
        await restart(args)
        return
    # the workers declare 100 slots each: let them have them (the default cap is 64)
    playground = TaskPlayGround(name="bench", port=0, max_worker_slots=100, state=args.state)
    await playground.start()
    print(f"listening on {playground.address}", flush=True)
    await playground.wait_for_agents(count=args.workers, role="processor", timeout=120)
    tasks = [
        TaskMessage(name=f"t{i}", duration=args.duration, required_role="processor")
        for i in range(args.tasks)
    ]
    group = TaskManager.create_task_group("bench", "", tasks)
    started = time.perf_counter()
    await playground.assign_task_groups([group])
    await playground.wait_for_completion(timeout=600)
    await durable(playground)
    elapsed = time.perf_counter() - started
    completed = playground.get_completed_tasks()
    print(
        "result "
        + json.dumps(
            {
                "tasks_per_s": len(completed) / elapsed,
                "completed": len(completed),
                "expected": args.tasks,
                "makespan": elapsed,
            }
        ),
        flush=True,
    )
    await playground.finish()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--duration", type=float, default=0.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--state", default=None, help="journal to this SQLite file")
    parser.add_argument("--restart", type=int, default=0, metavar="N")
    options = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    logger.enable("ceylon")
    transport.run(main(options))
