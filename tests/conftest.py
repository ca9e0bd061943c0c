"""Shared test settings: one scalable time unit and process helpers.

Every timing in the tests, waits and heartbeats alike, is a multiple of `TIMEOUT_FACTOR`
(env ``CEYLON_TEST_TIMEOUT_FACTOR``, default 1), so a slow machine needs one variable to
stretch them all at once. `BEAT` and `beat()` are the fast heartbeats tests use.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ceylon.testing import Process

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_FACTOR = float(
    os.environ.get("CEYLON_TEST_TIMEOUT_FACTOR")
    or os.environ.get("CEYLON_TESTS_TIMEOUT_FACTOR")  # the name it had first
    or "1"
)


def seconds(value: float) -> float:
    """`value` seconds, scaled by the timeout factor."""
    return value * TIMEOUT_FACTOR


#: Fast heartbeats, scaled: as keyword arguments and as CLI flags.
BEAT_INTERVAL = seconds(0.2)
BEAT_TIMEOUT = seconds(1.0)
BEAT = {"heartbeat_interval": BEAT_INTERVAL, "heartbeat_timeout": BEAT_TIMEOUT}
BEAT_FLAGS = ("--heartbeat-interval", str(BEAT_INTERVAL), "--heartbeat-timeout", str(BEAT_TIMEOUT))


@pytest.fixture
def spawn() -> Iterator[object]:
    """Start child processes (``spawn(*args)`` runs ``python *args``); all are stopped after."""
    children: list[Process] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Process:
        child = Process([sys.executable, *args], cwd=ROOT, env=env)
        children.append(child)
        return child

    yield start
    for child in children:
        child.stop(timeout=seconds(10))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fuzz-iterations",
        type=int,
        default=50_000,
        help="inputs per fuzz test (default 50,000; --fuzz-iterations 1000000 for a long run)",
    )
    parser.addoption("--fuzz-seed", type=int, default=20261123, help="fuzz seed")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A longer fuzz run is one flag away: its ceiling grows with the number of inputs.
    iterations = config.getoption("--fuzz-iterations")
    ceiling = max(120.0, 120.0 * iterations / 200_000) * TIMEOUT_FACTOR
    for item in items:
        if "fuzz" in item.nodeid.split("::")[0]:
            item.add_marker(pytest.mark.timeout(ceiling))


@pytest.fixture
def fuzz_iterations(request: pytest.FixtureRequest) -> int:
    return int(request.config.getoption("--fuzz-iterations"))


@pytest.fixture
def fuzz_seed(request: pytest.FixtureRequest) -> int:
    return int(request.config.getoption("--fuzz-seed"))


async def wait_until(predicate: Callable[[], bool]) -> None:
    """Wait until `predicate()` holds, checking on every loop turn.

    For the few states that have no event to await (e.g. "the kernel buffers are full
    and reading is paused"). Call it under ``asyncio.timeout``: it never decides
    anything by the passage of time.
    """
    while not predicate():  # noqa: ASYNC110 - no event exists for these states
        await asyncio.sleep(0.001)


# Over TCP and over NATS: the `hub` fixture (and the session's NATS cluster).
from .hubs import hub, nats_cluster, nats_server  # noqa: E402, F401
