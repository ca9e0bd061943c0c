"""Benchmark peer for the task processor: a task playground that times a run.

    python scripts/benchpeers/task_peers.py --tasks N --duration S --workers W

It listens (printing ``listening on HOST:PORT``), waits for W task workers, runs N tasks of
S seconds each in one group, and prints ``result {json}`` with tasks/s and the makespan.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from loguru import logger

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import transport  # noqa: E402
from ceylon.task import TaskManager, TaskMessage, TaskPlayGround  # noqa: E402


async def main(args: argparse.Namespace) -> None:
    # the workers declare 100 slots each: let them have them (the default cap is 64)
    playground = TaskPlayGround(name="bench", port=0, max_worker_slots=100)
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
    options = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    logger.enable("ceylon")
    transport.run(main(options))
