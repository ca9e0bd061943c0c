"""The pytest fixtures of ceylon.testing, used the way the README shows."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Callable

import pytest

from ceylon import BaseAgent, BasePlayGround, on
from ceylon.testing import Process, RunningPlayground, free_port, scaled


@dataclasses.dataclass
class Question:
    text: str


class Oracle(BaseAgent):
    @on(Question)
    async def answer(self, question: Question) -> str:
        return question.text.upper()


# -- the README's example, as written there -------------------------------------------


async def test_an_agent_answers(playground: BasePlayGround) -> None:
    oracle = Oracle("oracle")
    await oracle.connect(playground.address)
    try:
        assert await playground.ask("oracle", Question("hi")) == "HI"
    finally:
        await oracle.stop()


def test_a_worker_process_joins(
    playground_process: RunningPlayground, worker_process: Callable[..., Process]
) -> None:
    worker = worker_process("tests.agents:Echoer", name="echo")
    assert worker.pid > 0
    assert playground_process.address.startswith("127.0.0.1:")


# ---------------------------------------------------------------------------------------


def test_free_port_is_free_and_scaled_reads_the_factor(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))  # nobody holds it
    monkeypatch.setenv("CEYLON_TEST_TIMEOUT_FACTOR", "3")
    assert scaled(2.0) == 6.0
    monkeypatch.delenv("CEYLON_TEST_TIMEOUT_FACTOR")
    assert scaled(2.0) == 2.0
