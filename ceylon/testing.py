"""Testing Ceylon programs with pytest: fixtures for in-process and multi-process tests.

Installed with the package as a pytest plugin (the ``pytest11`` entry point ``ceylon``),
so the fixtures are there in any project that has ceylon-runtime installed:

* `playground`: an in-process `BasePlayGround` on a free port, started for the test and
  finished after it (needs pytest-asyncio; use it from ``async def`` tests).
* `playground_process`: a real ``ceylon playground`` process on a free port; its
  ``address`` is read from what it prints; stopped by PID after the test.
* `worker_process`: a factory, ``worker_process("mod:Class", name=..., role=...,
  **options)``, starting a real ``ceylon worker`` against `playground_process` and
  waiting until it is connected; each is stopped by PID after the test.

`free_port()` picks a free loopback port; `scaled(seconds)` multiplies a timeout by
``CEYLON_TEST_TIMEOUT_FACTOR`` (default 1), which every wait here uses too, so a slow
machine needs one variable. `Process` is the child-process helper they are built on.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from .base.playground import BasePlayGround
from .process import Process, python_command

__all__ = [
    "Process",
    "RunningPlayground",
    "free_port",
    "playground",
    "playground_process",
    "python_command",
    "scaled",
    "worker_process",
]


def scaled(seconds: float) -> float:
    """`seconds` times ``CEYLON_TEST_TIMEOUT_FACTOR`` (default 1)."""
    return seconds * float(os.environ.get("CEYLON_TEST_TIMEOUT_FACTOR") or "1")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` right now (the OS's pick; another process could take
    it before you bind it, so prefer port 0 where the program reports its port)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@dataclass
class RunningPlayground:
    """A ``ceylon playground`` process: where it listens, and the process itself."""

    address: str
    process: Process

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])


if importlib.util.find_spec("pytest_asyncio") is not None:  # async tests need it anyway
    import pytest_asyncio

    @pytest_asyncio.fixture
    async def playground() -> AsyncIterator[BasePlayGround]:
        """An in-process playground on a free port, started; finished after the test."""
        hub = BasePlayGround(name="playground", port=0)
        await hub.start()
        try:
            yield hub
        finally:
            await hub.finish()


@pytest.fixture
def playground_process() -> Iterator[RunningPlayground]:
    """A real ``ceylon playground`` process on a free port; stopped after the test."""
    child = Process(python_command("-m", "ceylon", "playground", "--port", "0"))
    try:
        match = child.wait_for_line(r"^listening on (\S+:\d+)$", timeout=scaled(30))
        yield RunningPlayground(match.group(1), child)
    finally:
        child.stop(timeout=scaled(10))


@pytest.fixture
def worker_process(
    playground_process: RunningPlayground,
) -> Iterator[Callable[..., Process]]:
    """Start ``ceylon worker`` processes against `playground_process`:
    ``worker_process("mod:Class", name="w1", role="r", **options)`` returns the process
    once the agent is connected; options go to the class as ``--option KEY=JSON``."""
    children: list[Process] = []

    def start(agent: str, *, name: str, role: str | None = None, **options: Any) -> Process:
        command = python_command(
            "-m", "ceylon", "worker", "--connect", playground_process.address,
            "--agent", agent, "--name", name, "--no-reconnect",
        )  # fmt: skip
        if role is not None:
            command += ["--role", role]
        for key, value in options.items():
            command += ["--option", f"{key}={json.dumps(value)}"]
        child = Process(command, cwd=os.getcwd())
        children.append(child)
        child.wait_for_line(rf"^agent {name} connected", timeout=scaled(30))
        return child

    try:
        yield start
    finally:
        for child in children:
            child.stop(timeout=scaled(10))
