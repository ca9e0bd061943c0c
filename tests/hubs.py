"""Where a test's agents meet: a TCP playground process, or a workspace on NATS with a
playground process on it (a 3-node cluster, one for the whole session).

    async def test_x(hub: Hub) -> None:
        worker = hub.worker("tests.agents:Echoer", "A")
        observer = await hub.join(Observer())

Tests that take `hub` run once over each (``[tcp]`` and ``[nats]``).
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from ceylon import BaseAgent
from ceylon.config import Settings
from ceylon.natsserver import NatsCluster, NatsServer
from ceylon.testing import Process

from .conftest import BEAT_FLAGS, BEAT_INTERVAL, BEAT_TIMEOUT, seconds


class Hub:
    """A playground process and how agents reach it."""

    def __init__(self, kind: str, spawn: Any, cluster: NatsCluster | None) -> None:
        self.kind = kind
        self.spawn = spawn
        self.cluster = cluster
        self.workspace = f"t{secrets.token_hex(4)}" if cluster is not None else "default"
        self.address = ""
        self.playground: Process | None = None

    @property
    def on_nats(self) -> bool:
        return self.cluster is not None

    def reach(self) -> list[str]:
        """The flags a CLI command reaches the workspace with."""
        if self.cluster is not None:
            return ["--nats", self.cluster.url, "--workspace", self.workspace]
        return ["--connect", self.address]

    def start_playground(self, *extra: str) -> Process:
        if self.cluster is not None:
            args = ["--nats", self.cluster.url, "--workspace", self.workspace]
            ready = r"^active on NATS"
        else:
            args = ["--port", "0"]
            ready = r"^listening on (\S+:\d+)"
        child: Process = self.spawn("-m", "ceylon", "playground", *args, *BEAT_FLAGS, *extra)
        match = child.wait_for_line(ready, timeout=seconds(30))
        if self.cluster is None:
            self.address = match.group(1)
        self.playground = child
        return child

    def worker(self, agent: str, name: str, *extra: str) -> Process:
        child: Process = self.spawn(
            "-m", "ceylon", "worker", *self.reach(), "--agent", agent, "--name", name,
            *BEAT_FLAGS, *extra,
        )  # fmt: skip
        child.wait_for_line(rf"^agent {name} connected", timeout=seconds(30))
        return child

    async def join(self, agent: BaseAgent) -> BaseAgent:
        """Connect an agent of the test process."""
        settings = Settings(
            workspace=self.workspace,
            heartbeat_interval=BEAT_INTERVAL,
            heartbeat_timeout=BEAT_TIMEOUT,
        )
        if self.cluster is not None:
            await agent.connect(settings=settings, nats=self.cluster.url)
        else:
            await agent.connect(self.address, settings=settings)
        return agent


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer]:
    """One nats-server with JetStream, for the whole session (tests take workspaces,
    streams and buckets of their own)."""
    with tempfile.TemporaryDirectory(prefix="ceylon-js-") as store:
        config = f"jetstream {{ store_dir: {store}, max_memory_store: 64MB }}"
        with NatsServer(config, timeout=seconds(20)) as server:
            yield server


@pytest.fixture(scope="session")
def nats_cluster() -> Iterator[NatsCluster]:
    """Three nats-servers with JetStream, for the whole session (tests take workspaces
    of their own)."""
    with NatsCluster(3, timeout=seconds(20)) as cluster:
        yield cluster


@pytest.fixture(params=["tcp", "nats"])
def hub(request: pytest.FixtureRequest, spawn: Any) -> Hub:
    """A playground process, over TCP or on NATS (the test runs once each way)."""
    cluster = request.getfixturevalue("nats_cluster") if request.param == "nats" else None
    made = Hub(request.param, spawn, cluster)
    made.start_playground()
    return made
