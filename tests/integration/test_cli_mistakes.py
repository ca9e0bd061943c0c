"""Every command-line mistake is one line on stderr and exit 2, never a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from ..conftest import ROOT, seconds


def ceylon(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ceylon", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=seconds(30),
    )


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


MISTAKES = {
    "port out of range": (["playground", "--port", "99999"], "out of range (0-65535)"),
    "port not a number": (["playground", "--port", "http"], "not a port number"),
    "address not local": (["playground", "--host", "192.0.2.1", "--port", "0"],
                          "cannot listen on 192.0.2.1:0"),
    "connect without a port": (["worker", "--connect", "localhost"], "expected HOST:PORT"),
    "status without a port": (["status", "--connect", "127.0.0.1"], "expected HOST:PORT"),
    "connect port 0": (["worker", "--connect", "127.0.0.1:0"], "out of range (1-65535)"),
    "agent not a class": (["worker", "--connect", "127.0.0.1:9", "--agent", "ceylon.cli:main"],
                          "is not an agent class"),
    "agent not found": (["worker", "--connect", "127.0.0.1:9", "--agent", "nowhere_x:Agent"],
                        "cannot load --agent nowhere_x:Agent"),
    "unknown option": (["worker", "--connect", "127.0.0.1:9", "--agent",
                        "ceylon.task:TaskExecutionAgent", "--option", "max_concurent_tasks=2"],
                       "--option max_concurent_tasks: TaskExecutionAgent takes no such option "
                       "(it takes: worker_role, max_concurrent_tasks,"),
    "factory returns an int": (["tasks", "run", "tests.fixtures.task_groups:not_groups"],
                               "must return a TaskGroup or a list of them, got 42"),
    "factory returns nothing": (["tasks", "run", "tests.fixtures.task_groups:no_groups"],
                                "must return a TaskGroup or a list of them, got []"),
    "unknown flag": (["playground", "--prot", "1"], "unrecognized arguments: --prot 1"),
    "unknown plugin": (["playground", "--port", "0", "--plugin", "nope"], "unknown plugin"),
}  # fmt: skip


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_a_mistake_is_one_line_and_exit_2(mistake: str) -> None:
    args, expected = MISTAKES[mistake]
    done = ceylon(*args)
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert expected in lines[0], lines[0]


def test_a_port_in_use_is_one_line_and_exit_2(busy_port: int) -> None:
    done = ceylon("playground", "--port", str(busy_port))
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert f"cannot listen on 127.0.0.1:{busy_port}" in line and "in use" in line, line


def test_version_and_help() -> None:
    from ceylon import __version__

    version = ceylon("--version")
    assert (version.returncode, version.stdout.strip()) == (0, f"ceylon {__version__}")
    for command in (["--help"], ["playground", "--help"], ["worker", "--help"],
                    ["tasks", "run", "--help"], ["status", "--help"]):  # fmt: skip
        shown = ceylon(*command)
        assert shown.returncode == 0 and "usage:" in shown.stdout, command
    assert "--import MODULE" in ceylon("worker", "--help").stdout
    assert "--json" in ceylon("tasks", "run", "--help").stdout


def test_status_defaults_to_the_default_port_and_retries_say_their_wait() -> None:
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    status = ceylon("status", "--once", "--timeout", "1")
    assert "127.0.0.1:8888" in status.stderr or status.returncode == 0, status.stderr
    worker = ceylon("worker", "--connect", f"127.0.0.1:{port}", "--connect-timeout", "1")
    assert worker.returncode == 1, worker.stderr
    assert "retrying in" in worker.stderr, worker.stderr
