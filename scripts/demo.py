"""The demo: real processes on free ports on 127.0.0.1, with a short report.

Run through ``scripts/demo``. Every child is started here, waited on with a deadline,
and stopped (terminate, wait, kill) by its PID.
"""

from __future__ import annotations

import asyncio
import re
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ceylon import BaseAgent  # noqa: E402
from ceylon.process import Process, python_command  # noqa: E402
from examples.chat_agents import Start  # noqa: E402


def section(title: str) -> None:
    print(f"\n== {title}", flush=True)


def transport_demo() -> None:
    section("transport: an echo server and a client as two processes")
    with Process(
        python_command("examples/transport_echo.py", "serve", "--port", "0"), cwd=ROOT
    ) as server:
        address = server.wait_for_line(r"listening on (\S+:\d+)").group(1)
        print(f"  server pid {server.pid} listening on {address}")
        client = Process(
            python_command(
                "examples/transport_echo.py", "client", "--connect", address, "--count", "2000"
            ),
            cwd=ROOT,
        )
        code = client.wait(timeout=60)
        for line in client.output().splitlines():
            print(f"  client: {line}")
        if code != 0:
            raise SystemExit(f"client failed with exit code {code}")
        server.signal(signal.SIGTERM)
        server.wait_for_line("server stopped")
        if server.wait() != 0:
            raise SystemExit("the echo server did not exit cleanly")
    print("  server said goodbye and exited 0 on SIGTERM")


def embedded_demo() -> None:
    section("agents: an embedded playground with play(workers=[...]), one process")
    run = Process(python_command("examples/embedded_playground.py"), cwd=ROOT)
    code = run.wait(timeout=60)
    for line in run.output().splitlines():
        print(f"  {line}")
    if code != 0:
        raise SystemExit(f"the embedded example failed with exit code {code}")


async def conduct(address: str) -> None:
    conductor = BaseAgent("conductor", role="conductor")
    await conductor.connect(address)
    await conductor.broadcast_message(Start(by="conductor"))
    await conductor.stop()


def processes_demo() -> None:
    section("agents: a playground and three workers, each its own process")
    started = time.monotonic()
    children: list[Process] = []
    try:
        playground = Process(python_command("-m", "ceylon", "playground", "--port", "0"), cwd=ROOT)
        children.append(playground)
        address = playground.wait_for_line(r"^listening on (\S+:\d+)").group(1)
        print(f"  playground pid {playground.pid} listening on {address}")
        workers = []
        for name in ("w1", "w2", "w3"):
            worker = Process(
                python_command(
                    "-m", "ceylon", "worker", "--connect", address,
                    "--agent", "examples.chat_agents:Chatter", "--name", name,
                ),
                cwd=ROOT,
            )  # fmt: skip
            children.append(worker)
            workers.append(worker)
        for name, worker in zip(("w1", "w2", "w3"), workers, strict=True):
            worker.wait_for_line(rf"^agent {name} connected")
            print(f"  worker {name} pid {worker.pid} connected")
        asyncio.run(conduct(address))
        print("  conductor broadcast Start; what the workers saw:")
        for name, worker in zip(("w1", "w2", "w3"), workers, strict=True):
            worker.wait_for_lines(
                [
                    rf"^{name}: broadcast from w\d",
                    rf"^{name}: broadcast from w\d",
                    rf"^{name}: direct from w\d",
                ]
            )
            for line in worker.lines:
                if line.startswith(f"{name}: "):
                    print(f"    {line}")
        for worker in workers:
            worker.signal(signal.SIGTERM)
        codes = [w.wait(timeout=10) for w in workers]
        playground.signal(signal.SIGTERM)
        codes.append(playground.wait(timeout=10))
        if any(codes):
            raise SystemExit(f"exit codes {codes}")
        left = {
            m.group(1) for line in playground.drain() if (m := re.search(r"agent (w\d) left", line))
        }
        print(
            f"  {len(left)} workers said goodbye; every process exited 0 "
            f"({time.monotonic() - started:.1f} s)"
        )
    finally:
        for child in children:
            child.stop()


def task_tutorial_demo() -> None:
    section("tasks: the task-processing tutorial, unmodified (playground on a free port)")
    run = Process(python_command("examples/task_processing.py"), cwd=ROOT, env={"CEYLON_PORT": "0"})
    code = run.wait(timeout=60)
    shown = ("Progress:", "Goal", "Final Statistics", "Completed Tasks", "Average Duration")
    for line in run.output().splitlines():
        if any(key in line for key in shown):
            print("  " + line.split(" - ", 1)[-1])
    if code != 0:
        raise SystemExit(f"the task tutorial failed with exit code {code}")


def task_processes_demo() -> None:
    section("tasks: ceylon playground --plugin tasks, two worker processes, tasks run, status")
    children: list[Process] = []
    try:
        journal = Path(tempfile.mkdtemp(prefix="ceylon-demo-")) / "tasks.db"
        playground = Process(
            python_command("-m", "ceylon", "playground", "--port", "0", "--plugin", "tasks",
                           "--state", str(journal)),
            cwd=ROOT,
        )  # fmt: skip
        children.append(playground)
        address = playground.wait_for_line(r"^listening on (\S+:\d+)").group(1)
        print(f"  playground with the task plugin on {address}")
        for n in range(2):
            worker = Process(
                python_command(
                    "-m", "ceylon", "worker", "--connect", address,
                    "--agent", "ceylon.task:TaskExecutionAgent", "--role", "processor",
                    "--name", f"processor-{n}", "--option", "max_concurrent_tasks=4",
                ),
                cwd=ROOT,
            )  # fmt: skip
            children.append(worker)
            worker.wait_for_line(rf"^agent processor-{n} connected")
            print(f"  worker processor-{n} pid {worker.pid} connected")
        run = Process(
            python_command(
                "-m", "ceylon", "tasks", "run", "examples.task_groups:demo", "--connect", address
            ),
            cwd=ROOT,
            env={"COLUMNS": "90"},
        )
        code = run.wait(timeout=60)
        for line in run.output().splitlines():
            if "|" not in line[:20]:
                print(f"  {line}")
        if code != 0:
            raise SystemExit(f"ceylon tasks run failed with exit code {code}")
        status = Process(
            python_command("-m", "ceylon", "status", "--connect", address, "--once"),
            cwd=ROOT,
            env={"COLUMNS": "90"},
        )
        code = status.wait(timeout=30)
        print(f"  ceylon status --connect {address} --once:")
        for line in status.output().splitlines():
            if "|" not in line[:20]:
                print(f"    {line}")
        if code != 0:
            raise SystemExit(f"ceylon status failed with exit code {code}")
    finally:
        for child in children:
            child.stop()


def double_bookings(lines: list[str]) -> list[str]:
    """People in two overlapping meetings, from "Name: date start-end with A, B" lines."""
    booked: dict[str, list[tuple[int, int]]] = {}
    for line in lines:
        match = re.match(r"^.+?: (\S+) (\d+)-(\d+) with (.+)$", line)
        if match:
            start, end = int(match.group(2)), int(match.group(3))
            for person in match.group(4).split(", "):
                booked.setdefault(person, []).append((start, end))
    return sorted(
        person
        for person, spans in booked.items()
        if any(a < d and c < b for i, (a, b) in enumerate(spans) for c, d in spans[i + 1 :])
    )


def meetings_demo() -> None:
    section("meetings: the tutorial's own algorithm, then the shipped scheduler, same data")
    for script, label in (("examples/meeting_scheduling.py", "tutorial code"),
                          ("examples/meeting_plugin.py", "meeting plugin")):  # fmt: skip
        run = Process(python_command(script), cwd=ROOT)
        code = run.wait(timeout=60)
        lines = [line for line in run.output().splitlines() if "|" not in line]
        for line in lines:
            print(f"  [{label}] {line}")
        if code != 0:
            raise SystemExit(f"{script} failed with exit code {code}")
        clashes = double_bookings(lines)
        if clashes:
            print(f"  [{label}] double-booked: {', '.join(clashes)}")
    section("meetings: ceylon meetings solve, one participant agent per person over TCP")
    instances = ROOT / "tests" / "data" / "meetings"
    out = ROOT / "bench-results" / "demo-medium_11.json"
    out.parent.mkdir(exist_ok=True)
    solve = Process(
        python_command("-m", "ceylon", "meetings", "solve",
                       str(instances / "instances" / "medium_11.json"), "--out", str(out)),
        cwd=ROOT,
    )  # fmt: skip
    if solve.wait(timeout=120) != 0:
        raise SystemExit(f"ceylon meetings solve failed:\n{solve.output()}")
    for line in solve.output().splitlines():
        print(f"  {line}")
    check = Process(
        python_command(str(instances / "validate.py"),
                       str(instances / "instances" / "medium_11.json"), str(out)),
        cwd=ROOT,
    )  # fmt: skip
    code = check.wait(timeout=60)
    for line in check.output().splitlines()[-3:]:
        print(f"  validate.py: {line}")
    if code != 0:
        raise SystemExit("the schedule did not validate")


def main() -> int:
    started = time.monotonic()
    transport_demo()
    embedded_demo()
    processes_demo()
    task_tutorial_demo()
    task_processes_demo()
    meetings_demo()
    print(f"\ndemo finished in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
