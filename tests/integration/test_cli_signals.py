"""SIGINT and SIGTERM end `tasks run` and `meetings solve` in order: children stopped and
reaped, the run summarised as interrupted, exit 130 or 143."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ceylon.testing import Process

from ..conftest import ROOT, seconds

DATA = ROOT / "tests" / "data" / "meetings"


def children_of(pid: int) -> list[int]:
    """The PIDs whose parent is `pid` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after its ')'
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_tasks_run_stops_its_workers_and_says_it_was_interrupted(
    spawn: Any, signum: signal.Signals, code: int
) -> None:
    run: Process = spawn("-m", "ceylon", "tasks", "run", "tests.fixtures.task_groups:slow",
                         "--workers", "2", "--max-concurrent", "1")  # fmt: skip
    run.wait_for_lines([r"worker processor-0 .*offers", r"worker processor-1 .*offers"],
                       timeout=seconds(30))  # fmt: skip
    workers = children_of(run.pid)
    assert len(workers) == 2, workers
    run.signal(signum)
    assert run.wait(seconds(15)) == code, run.output()
    assert f"interrupted by {signum.name} at " in run.output()
    assert "/20 tasks" in run.output()
    assert not [pid for pid in workers if alive(pid)], "workers left running"


def test_an_interrupted_solve_exits_within_a_second_with_the_best_schedule(
    spawn: Any, tmp_path: Path
) -> None:
    out = tmp_path / "schedule.json"
    instance = DATA / "instances" / "xl_11.json"
    # timed as it runs for users: without the asyncio debug mode scripts/test turns on
    run: Process = spawn("-m", "ceylon", "meetings", "solve", str(instance), "--out", str(out),
                         "--time-limit", "60", env={"PYTHONASYNCIODEBUG": ""})  # fmt: skip
    run.wait_for_line(r"round 1: solving", timeout=seconds(60))
    signalled = time.monotonic()
    run.signal(signal.SIGINT)
    assert run.wait(seconds(10)) == 130, run.output()
    assert time.monotonic() - signalled < seconds(1.5)  # 1 s, and the process's exit
    assert "wrote the best valid schedule found so far" in run.output()
    checked = subprocess.run(
        [sys.executable, str(DATA / "validate.py"), str(instance), str(out)],
        capture_output=True, text=True, timeout=seconds(60),
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert json.loads(out.read_text())["schedule"]
