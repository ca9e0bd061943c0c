"""Playground and workers as separate processes (``python -m ceylon ...``) over TCP.

The test process joins as an agent too, to send commands and observe; everything else
runs in children that are started here and stopped by PID.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trustme

from ceylon import AgentDetail, AgentNotFoundError, BaseAgent, on, on_disconnect
from ceylon.testing import Process, RunningPlayground

from ..agents import Command, Note
from ..conftest import BEAT_FLAGS, seconds, wait_until
from ..hubs import Hub

BEAT = BEAT_FLAGS


@dataclasses.dataclass
class Seen:
    sender: str
    seq: int
    text: str


class Observer(BaseAgent):
    def __init__(self, name: str = "observer") -> None:
        super().__init__(name, role="observer")
        self.notes: list[Seen] = []
        self.left: dict[str, float] = {}

    @on(Note)
    async def note(self, note: Note, agent: AgentDetail) -> None:
        self.notes.append(Seen(agent.name, note.seq, note.text))

    @on_disconnect("*")
    async def gone(self, topic: str, agent: AgentDetail) -> None:
        self.left[agent.name] = time.monotonic()


def start_playground(spawn: Any, *extra: str) -> tuple[Process, str]:
    playground = spawn("-m", "ceylon", "playground", "--port", "0", *BEAT, *extra)
    match = playground.wait_for_line(r"^listening on (\S+:\d+)", timeout=seconds(20))
    return playground, match.group(1)


def start_worker(spawn: Any, address: str, name: str, *extra: str) -> Process:
    worker = spawn(
        "-m", "ceylon", "worker", "--connect", address, "--agent", "tests.agents:Echoer",
        "--name", name, *BEAT, *extra,
    )  # fmt: skip
    worker.wait_for_line(rf"^agent {name} connected", timeout=seconds(20))
    return worker


def lines(process: Process, prefix: str) -> list[str]:
    return [line for line in process.drain() if line.startswith(prefix)]


async def observer_for(address: str) -> Observer:
    observer = Observer()
    await observer.connect(address, settings=None)
    return observer


def test_the_readme_fixtures_start_a_playground_and_workers(
    playground_process: RunningPlayground, worker_process: Callable[..., Process]
) -> None:
    # with the fixtures of ceylon.testing, as a user's project would
    worker_process("tests.agents:Echoer", name="A")
    assert playground_process.address.startswith("127.0.0.1:")


async def test_broadcast_reaches_every_other_agent_once_in_order(hub: Hub) -> None:
    a = hub.worker("tests.agents:Echoer", "A")
    b = hub.worker("tests.agents:Echoer", "B")
    observer = await hub.join(Observer())
    try:
        await asyncio.to_thread(b.wait_for_line, r"^B saw observer join", seconds(10))
        await observer.send_message("A", Command("broadcast", count=1000))
        await asyncio.to_thread(a.wait_for_line, r"^A broadcast 1000", seconds(30))
        async with asyncio.timeout(seconds(20)):
            await wait_until(lambda: len(observer.notes) >= 1000)
        assert [n.seq for n in observer.notes if n.sender == "A"] == list(range(1000))
        await asyncio.to_thread(b.wait_for_line, r"^B got note 999 from A", seconds(20))
        got_b = [int(line.split()[3]) for line in lines(b, "B got note")]
        assert got_b == list(range(1000))  # exactly once each, in order
        assert lines(a, "A got note") == []  # a broadcast is not sent back to its sender
    finally:
        await observer.stop()


async def test_direct_and_broadcast_messages_keep_their_order_between_two_agents(
    hub: Hub,
) -> None:
    a = hub.worker("tests.agents:Echoer", "A")
    b = hub.worker("tests.agents:Echoer", "B")
    observer = await hub.join(Observer())
    try:
        await asyncio.to_thread(a.wait_for_line, r"^A saw B join", seconds(10))
        # A alternates: a run of direct messages to B, then a broadcast, many times
        await observer.send_message("A", Command("mixed", arg="B", count=300))
        await asyncio.to_thread(b.wait_for_line, r"^B got direct 299 from A", seconds(30))
        got = [line.split()[2:4] for line in lines(b, "B got ") if " from A" in line]
        expected = [["direct" if i % 3 else "all", str(i)] for i in range(300)]
        assert got == expected
    finally:
        await observer.stop()


async def test_direct_messages_by_name_and_id_reach_only_their_target(hub: Hub) -> None:
    a, b, c = (hub.worker("tests.agents:Echoer", name) for name in "ABC")
    observer = await hub.join(Observer())
    try:
        b_id = next(d.id for d in await observer.get_connected_agents() if d.name == "B")
        await observer.send_message("A", Command("direct", arg="B", count=1))
        await observer.send_message("A", Command("direct", arg=b_id, count=2))
        await asyncio.to_thread(b.wait_for_line, r"^B got direct 2 from A", seconds(20))
        assert lines(b, "B got direct") == ["B got direct 1 from A", "B got direct 2 from A"]
        await observer.send_message("C", Command("direct", arg="A", count=3))
        await asyncio.to_thread(a.wait_for_line, r"^A got direct 3 from C", seconds(20))
        assert lines(c, "C got direct") == [] and observer.notes == []
    finally:
        await observer.stop()


async def test_a_killed_worker_is_noticed_everywhere(hub: Hub) -> None:
    playground = hub.playground
    assert playground is not None
    a = hub.worker("tests.agents:Echoer", "A")
    b = hub.worker("tests.agents:Echoer", "B")
    observer = await hub.join(Observer())
    try:
        await asyncio.to_thread(b.wait_for_line, r"^B saw observer join", seconds(10))
        killed_at = time.monotonic()
        a.kill()
        deadline = 1.0 + 1.0  # heartbeat timeout + 1 s
        async with asyncio.timeout(seconds(10)):
            await wait_until(lambda: "A" in observer.left)
        assert observer.left["A"] - killed_at <= seconds(deadline)
        await asyncio.to_thread(b.wait_for_line, r"^B saw A leave", seconds(deadline))
        await asyncio.to_thread(playground.wait_for_line, r"agent A left", seconds(deadline))
        assert "A" not in {d.name for d in await observer.get_connected_agents()}
        with pytest.raises(AgentNotFoundError, match="'A'"):
            await observer.send_message("A", Note("observer", 0))
    finally:
        await observer.stop()


async def test_workers_reconnect_to_a_restarted_playground(spawn: Any) -> None:
    first, address = start_playground(spawn)
    port = address.rsplit(":", 1)[1]
    a = start_worker(spawn, address, "A")
    start_worker(spawn, address, "B")
    a.wait_for_lines([r"^A saw playground join", r"^A saw B join"], timeout=seconds(10))
    first.signal(signal.SIGTERM)
    assert await asyncio.to_thread(first.wait, seconds(10)) == 0
    second = spawn("-m", "ceylon", "playground", "--port", port, *BEAT)
    second.wait_for_line(r"^listening on", timeout=seconds(20))
    joined = [r"agent A .*joined", r"agent B .*joined"]
    await asyncio.to_thread(second.wait_for_lines, joined, seconds(20))
    # it says who came back, and the workers' on_connect handlers fire again as for a
    # fresh join: for the new playground and for each other
    came_back = r"came back after a playground restart \(2 agent\(s\) came back so far\)"
    await asyncio.to_thread(second.wait_for_line, came_back, seconds(10))
    again = [r"^A saw playground join", r"^A saw B join"]
    await asyncio.to_thread(a.wait_for_lines, again, seconds(10))


def test_a_run_loop_starts_again_after_the_playground_restarts(spawn: Any) -> None:
    first, address = start_playground(spawn)
    port = address.rsplit(":", 1)[1]
    looper = spawn(
        "-m", "ceylon", "worker", "--connect", address, "--agent", "tests.agents:Looper",
        "--name", "looper", *BEAT,
    )  # fmt: skip
    looper.wait_for_line(r"^looper run loop start 1$", timeout=seconds(20))
    first.signal(signal.SIGKILL)  # not even a goodbye
    first.wait(seconds(10))
    second = spawn("-m", "ceylon", "playground", "--port", port, *BEAT)
    second.wait_for_line(r"agent looper .*joined", timeout=seconds(20))
    looper.wait_for_line(r"^looper run loop start 2$", timeout=seconds(10))
    # and it runs: its broadcasts reach the new playground (counted in its status)
    status = spawn("-m", "ceylon", "status", "--connect", address, "--once", "--json")
    routed = json.loads(status.wait_for_line(r"^\{.*", timeout=seconds(20)).group(0))
    assert routed["messages_routed"] > 0, routed
    assert "ended" not in looper.output() and "raised" not in looper.output(), looper.output()


def test_sigterm_and_sigint_end_processes_in_order(spawn: Any) -> None:
    playground, address = start_playground(spawn)
    worker = start_worker(spawn, address, "A", "--no-reconnect")
    worker.signal(signal.SIGINT)
    assert worker.wait(seconds(10)) == 0
    playground.wait_for_line(r"agent A left: agent stopping", timeout=seconds(10))
    playground.signal(signal.SIGTERM)
    assert playground.wait(seconds(10)) == 0


def test_a_wrong_token_is_refused_with_the_reason_on_both_sides(spawn: Any) -> None:
    playground, address = start_playground(spawn, "--token", "right-token")
    worker = spawn(
        "-m", "ceylon", "worker", "--connect", address, "--name", "intruder",
        "--token", "wrong-token",
    )  # fmt: skip
    assert worker.wait(seconds(20)) == 2
    said = [line for line in worker.output().splitlines() if "authentication failed" in line]
    assert len(said) == 1, worker.output()  # once, not three times
    playground.wait_for_line(r"handshake failed: authentication failed", timeout=seconds(10))


def test_tls_end_to_end(spawn: Any, tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    playground, address = start_playground(
        spawn, "--tls-cert", str(tmp_path / "cert.pem"), "--tls-key", str(tmp_path / "key.pem"),
        "--token", "t",
    )  # fmt: skip
    start_worker(spawn, address, "A", "--tls-ca", str(tmp_path / "ca.pem"), "--token", "t")
    playground.wait_for_line(r"agent A .*joined", timeout=seconds(10))
    plain = spawn("-m", "ceylon", "worker", "--connect", address, "--name", "plain",
                  "--connect-timeout", "2", "--token", "t")  # fmt: skip
    assert plain.wait(seconds(20)) != 0  # a client without TLS does not get in


def test_binding_a_public_address_without_a_token_warns(spawn: Any) -> None:
    playground = spawn("-m", "ceylon", "playground", "--host", "0.0.0.0", "--port", "0")
    playground.wait_for_line(r"without a token", timeout=seconds(20))


async def test_a_raising_or_busy_handler_does_not_stop_a_worker_process(spawn: Any) -> None:
    playground, address = start_playground(spawn)
    a = start_worker(spawn, address, "A")
    observer = await observer_for(address)
    try:
        await observer.send_message("A", Command("raise"))
        await observer.send_message("A", Command("reply", count=7))
        async with asyncio.timeout(seconds(10)):
            await wait_until(lambda: len(observer.notes) == 1)
        assert observer.notes == [Seen("A", 7, "reply")]
        # logged before the reply was sent, read by this process's reader when it can
        await asyncio.to_thread(a.wait_for_line, r"for Command from .* raised", seconds(10))
    finally:
        await observer.stop()


def test_status_live_refused_and_unreachable(spawn: Any) -> None:
    playground, address = start_playground(spawn, "--token", "right")
    refused = spawn("-m", "ceylon", "status", "--connect", address, "--once", "--token", "wrong")
    assert refused.wait(seconds(30)) == 2
    assert "refused" in refused.output()
    live = spawn("-m", "ceylon", "status", "--connect", address, "--token", "right",
                 "--interval", "0.1", "--json")  # fmt: skip
    views = [
        json.loads(live.wait_for_line(r'^\{"playground".*', timeout=seconds(20)).group(0))
        for _ in range(2)  # it refreshes
    ]
    assert [v["agents"] for v in views] == [[], []]  # the observer does not count itself
    assert views[0]["uptime"] < views[1]["uptime"]
    live.signal(signal.SIGINT)
    assert live.wait(seconds(20)) == 0
    playground.stop(timeout=seconds(10))
    gone = spawn("-m", "ceylon", "status", "--connect", address, "--once", "--timeout", "5")
    assert gone.wait(seconds(30)) == 1
    assert "cannot reach the playground" in gone.output()
