"""The agent runtime in one process: a playground and agents over real TCP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import dataclasses
import decimal
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

import transport
from ceylon import (
    AgentDetail,
    AgentNotFoundError,
    BaseAgent,
    BasePlayGround,
    HandshakeError,
    PeerMode,
    WorkersMissingError,
    on,
    on_connect,
    on_disconnect,
    on_run,
    system,
)
from ceylon.monitor import Observer
from ceylon.plugin import Plugin

from ..conftest import BEAT, seconds, wait_until


@dataclasses.dataclass
class Chat:
    seq: int
    text: str = ""


@dataclasses.dataclass
class Slow:
    seconds: float


class Listener(BaseAgent):
    def __init__(self, name: str, role: str = "listener") -> None:
        super().__init__(name, mode=PeerMode.CLIENT, role=role)
        self.got: list[tuple[str, int, str]] = []
        self.times: list[float] = []
        self.arrived = asyncio.Event()
        self.joined: list[str] = []
        self.left: list[str] = []

    @on(Chat)
    async def chat(self, msg: Chat, time: int, agent: AgentDetail) -> None:
        self.got.append((agent.name, msg.seq, msg.text))
        self.times.append(asyncio.get_running_loop().time())
        self.arrived.set()
        if msg.text == "boom":
            raise RuntimeError("handler failure on purpose")

    @on(Slow)
    async def slow(self, msg: Slow) -> None:
        await asyncio.sleep(msg.seconds)

    @on_connect("*")
    async def on_join(self, topic: str, agent: AgentDetail) -> None:
        self.joined.append(agent.name)

    @on_disconnect("*")
    async def on_leave(self, topic: str, agent: AgentDetail) -> None:
        self.left.append(agent.name)


class Quiet(BaseAgent):
    """No membership handlers: it learns about others only as it needs to."""

    def __init__(self, name: str, role: str = "quiet") -> None:
        super().__init__(name, role=role)
        self.got: list[tuple[str, int]] = []

    @on(Chat)
    async def chat(self, msg: Chat, agent: AgentDetail) -> None:
        self.got.append((agent.name, msg.seq))


class Hub(BasePlayGround):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(name="hub", port=0, **kwargs)
        self.got: list[tuple[str, int]] = []

    @on(Chat)
    async def chat(self, msg: Chat, agent: AgentDetail) -> None:
        self.got.append((agent.name, msg.seq))


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    playground = Hub(**BEAT)
    yield playground
    await playground.finish()


async def settle(*agents: Any) -> None:
    """Wait until every agent has handled what it received (bounded)."""
    async with asyncio.timeout(seconds(5)):
        for agent in agents:
            await agent.wait_idle()


async def test_broadcast_and_direct_semantics(hub: Hub) -> None:
    a, b, q = Listener("a"), Listener("b"), Quiet("q")
    async with hub.play(workers=[a, b, q]):
        await a.broadcast_message(Chat(1, "to all"))
        await a.send_message("b", Chat(2, "to b by name"))
        await a.send_message(q.id, Chat(3, "to q by id"))
        await q.send_message("hub", Chat(4, "to the playground"))
        await hub.broadcast_message(Chat(5, "from the playground"))
        async with asyncio.timeout(seconds(5)):
            await wait_until(lambda: len(b.got) == 3 and len(q.got) == 3 and len(hub.got) == 2)
            await wait_until(lambda: len(a.got) == 1)
        await settle(a, b, q, hub)
        assert sorted(b.got) == [
            ("a", 1, "to all"),
            ("a", 2, "to b by name"),
            ("hub", 5, "from the playground"),
        ]
        assert sorted(q.got) == [("a", 1), ("a", 3), ("hub", 5)]
        assert sorted(hub.got) == [("a", 1), ("q", 4)]
        assert a.got == [("hub", 5, "from the playground")]  # not its own broadcast


async def test_unknown_targets_raise_naming_them(hub: Hub) -> None:
    a, q = Listener("a"), Quiet("q")
    async with hub.play(workers=[a, q]):
        with pytest.raises(AgentNotFoundError, match="'nobody'"):
            await a.send_message("nobody", Chat(1))
        with pytest.raises(AgentNotFoundError, match="'nobody'"):
            await q.send_message("nobody", Chat(1))
        with pytest.raises(AgentNotFoundError):
            await hub.send_message("nobody", Chat(1))


async def test_membership_events_and_directory(hub: Hub) -> None:
    a, b, q = Listener("a"), Listener("b"), Quiet("q")
    async with hub.play(workers=[a, b, q]):
        async with asyncio.timeout(seconds(5)):
            await wait_until(lambda: {"hub", "b", "q"} <= set(a.joined))
        names = {d.name for d in await q.get_connected_agents()}
        assert names == {"hub", "a", "b"}
        assert {d.name for d in await hub.get_connected_agents()} == {"a", "b", "q"}
        await b.stop()
        assert {"hub", "a", "q"} <= set(b.left)  # stop() let its on_disconnect handlers run
        async with asyncio.timeout(seconds(5)):
            await wait_until(lambda: "b" in a.left)
        assert "b" not in {d.name for d in await a.get_connected_agents()}
        with pytest.raises(AgentNotFoundError):
            await a.send_message("b", Chat(1))


async def test_a_name_sent_to_before_follows_who_holds_it_now(hub: Hub) -> None:
    a, b = Listener("a"), Listener("b")
    async with hub.play(workers=[a, b]):
        await a.send_message("b", Chat(1))  # a now sends to "b" along b's route
        async with asyncio.timeout(seconds(5)):
            await wait_until(lambda: len(b.got) == 1)
        await b.stop()
        async with asyncio.timeout(seconds(5)):
            await wait_until(lambda: "b" in a.left)
        with pytest.raises(AgentNotFoundError):
            await a.send_message("b", Chat(2))
        again = Listener("b")
        await again.connect(f"127.0.0.1:{hub.port}")
        try:
            async with asyncio.timeout(seconds(5)):
                await wait_until(lambda: a.joined.count("b") == 2)
            await a.send_message("b", Chat(3))
            async with asyncio.timeout(seconds(5)):
                await wait_until(lambda: len(again.got) == 1)
            assert again.got == [("a", 3, "")] and b.got == [("a", 1, "")]
        finally:
            await again.stop()


async def test_per_sender_order_over_a_thousand_messages(hub: Hub) -> None:
    a, b, c = Listener("a"), Listener("b"), Quiet("c")
    async with hub.play(workers=[a, b, c]):
        for i in range(1000):
            await a.broadcast_message(Chat(i))
            await b.broadcast_message(Chat(10_000 + i))
        async with asyncio.timeout(seconds(10)):
            await wait_until(lambda: len(c.got) == 2000 and len(hub.got) == 2000)
        assert [n for s, n in c.got if s == "a"] == list(range(1000))
        assert [n for s, n in c.got if s == "b"] == list(range(10_000, 11_000))
        assert [n for s, n in hub.got if s == "a"] == list(range(1000))


async def test_a_raising_handler_does_not_stop_the_agent(hub: Hub) -> None:
    a, b = Listener("a"), Listener("b")
    async with hub.play(workers=[a, b]):
        await a.send_message("b", Chat(1, "boom"))
        await a.send_message("b", Chat(2, "after"))
        async with asyncio.timeout(seconds(5)):
            await wait_until(lambda: len(b.got) == 2)
        assert [s for _, s, _ in b.got] == [1, 2]


async def test_a_slow_handler_delays_neither_heartbeats_nor_other_senders(hub: Hub) -> None:
    # Heartbeats every 0.2 s, dead after 1 s: a 3 s handler must not look like death.
    a, b, c = Listener("a"), Listener("b"), Listener("c")
    async with hub.play(workers=[a, b, c]):
        await a.send_message("c", Slow(3.0))
        await a.send_message("c", Chat(1, "queued behind the slow one"))
        loop = asyncio.get_running_loop()
        sent_at = loop.time()
        await b.send_message("c", Chat(2, "from another sender"))
        async with asyncio.timeout(seconds(5)):
            await c.arrived.wait()
        latency = c.times[0] - sent_at
        assert c.got[0] == ("b", 2, "from another sender")
        assert latency < seconds(0.5), f"another sender waited {latency:.2f} s"
        async with asyncio.timeout(seconds(10)):
            await wait_until(lambda: len(c.got) == 2)
        assert c.got[1][:2] == ("a", 1)
        assert "c" not in a.left and not c.left  # nobody was declared dead meanwhile


async def test_two_hundred_agents_join_through_play(hub: Hub) -> None:
    agents = [Quiet(f"agent-{i}") for i in range(200)]
    started = time.monotonic()
    async with hub.play(workers=agents, timeout=seconds(30)) as playground:
        elapsed = time.monotonic() - started
        assert len(playground.directory) == 200
        await agents[0].broadcast_message(Chat(7))
        async with asyncio.timeout(seconds(10)):
            await wait_until(lambda: all(len(a.got) == 1 for a in agents[1:]))
    assert elapsed < seconds(15)


async def test_a_large_directory_arrives_in_chunks(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(system, "CHUNK_AGENTS", 7)
    quiet = [Quiet(f"quiet-{i}") for i in range(30)]
    everyone = {f"quiet-{i}" for i in range(30)}
    async with hub.play(workers=quiet, timeout=seconds(30)) as p:
        late = Listener("late")
        await late.connect(p.address)  # returns once the last snapshot chunk is in
        try:
            await settle(late)
            assert everyone | {"hub"} <= set(late.joined)
            names = {d.name for d in await late.get_connected_agents()}
            assert names == everyone | {"hub"}
            # A non-subscriber's listing and a status come in chunks too.
            listed = {d.name for d in await quiet[0].get_connected_agents()}
            assert listed == (everyone - {"quiet-0"}) | {"hub", "late"}
            status = await quiet[0].playground_status()
            assert {d.name for d in status.agents} == everyone | {"late"}
        finally:
            await late.stop()


def test_chunks_respect_both_limits() -> None:
    agents = [AgentDetail(str(i), f"a{i}") for i in range(10)]
    sizes = {"0": 10, "1": system.CHUNK_BYTES, "2": 5}  # "1" alone fills a chunk
    parts = system.chunked(agents, lambda a: sizes.get(a.id, 1))
    assert [[a.id for a in chunk] for chunk, _ in parts] == [
        ["0"],
        ["1"],
        ["2", "3", "4", "5", "6", "7", "8", "9"],
    ]
    assert [final for _, final in parts] == [False, False, True]
    assert system.chunked([], len) == [([], True)]


async def test_a_link_lost_before_the_directory_came_fails_connect_at_once() -> None:
    async def hang_up(conn: transport.Connection) -> None:
        await conn.close("not a playground after all")

    server = await transport.serve(hang_up, "127.0.0.1", 0)
    try:
        listener = Listener("early")
        started = time.monotonic()
        with pytest.raises(transport.ConnectionClosed, match="before the directory came"):
            await listener.connect(("127.0.0.1", server.port))
        assert time.monotonic() - started < seconds(2)  # not after open_timeout
        assert listener.connected_playground is None
    finally:
        await server.aclose()


async def test_playground_status_from_a_client_and_from_the_playground(hub: Hub) -> None:
    a, q = Listener("a"), Quiet("q")
    async with hub.play(workers=[a, q]):
        for seq in range(25):
            await a.send_message("q", Chat(seq))
        async with asyncio.timeout(seconds(5)):
            await wait_until(lambda: len(q.got) == 25)
        for status in (await q.playground_status(), await hub.playground_status()):
            assert status.playground.name == "hub"
            assert sorted(d.name for d in status.agents) == ["a", "q"]
            assert status.messages_routed == 25  # the status requests are not counted
            assert 0 < status.uptime < seconds(30)
            assert status.plugins == {}
        # What `ceylon status` connects as: it asks, and nobody hears of it.
        observer = Observer("status-x")
        await observer.connect(hub.address)
        try:
            seen = await observer.playground_status()
            assert sorted(d.name for d in seen.agents) == ["a", "q"]
            assert len(hub.directory) == 2 and seen.messages_routed == 25
            await settle(a)
            assert "status-x" not in a.joined
        finally:
            await observer.stop()
        await settle(a)
        assert "status-x" not in a.left


class Quitter(BaseAgent):
    """Stops itself from inside a handler."""

    def __init__(self) -> None:
        super().__init__("quitter", role="quitter")
        self.got: list[int] = []
        self.stopped = asyncio.Event()

    @on(Chat)
    async def chat(self, msg: Chat) -> None:
        self.got.append(msg.seq)
        if msg.text == "quit":
            await self.stop()
            self.stopped.set()


async def test_stop_from_inside_a_handler_returns_at_once_and_the_agent_can_rejoin(
    hub: Hub,
) -> None:
    quitter = Quitter()
    async with hub.play(workers=[quitter]) as p:
        started = time.monotonic()
        await hub.send_message("quitter", Chat(1, "quit"))
        async with asyncio.timeout(seconds(5)):
            await quitter.stopped.wait()
        assert time.monotonic() - started < seconds(0.8)  # no wait on itself
        await p.wait_for_agents(count=0, timeout=seconds(5))
        await quitter.connect(p.address)
        try:
            await p.wait_for_agents(count=1, timeout=seconds(5))
            await hub.send_message("quitter", Chat(2))
            async with asyncio.timeout(seconds(5)):
                await wait_until(lambda: quitter.got == [1, 2])
        finally:
            await quitter.stop()


class Careless(Plugin):
    name = "careless"

    def status(self) -> dict[str, Any]:
        return {"ratio": decimal.Decimal("0.5")}  # the codec cannot send it


async def test_a_plugin_figure_that_cannot_travel_costs_nobody_the_connection(hub: Hub) -> None:
    hub.add_plugin(Careless())
    q = Quiet("q")
    async with hub.play(workers=[q]):
        status = await q.playground_status()
        assert status.plugins == {"careless": {"error": "the plugin could not report its status"}}
        assert [d.name for d in await q.get_connected_agents()] == ["hub"]


async def test_play_without_workers_yields_at_once_and_leaks_no_tasks() -> None:
    before = asyncio.all_tasks()
    playground = Hub()
    async with playground.play() as p:
        assert p is playground and p.port > 0
        worker = Listener("solo")
        await worker.connect(p.address)
        await p.wait_for_agents(count=1, role="listener", timeout=seconds(5))
        await worker.stop()
    assert asyncio.all_tasks() - before == set()


async def test_wait_for_agents_names_who_is_missing(hub: Hub) -> None:
    async with hub.play(workers=[Quiet("present")]) as p:
        with pytest.raises(WorkersMissingError) as info:
            await p.wait_for_agents(names=["present", "absent"], timeout=0.2)
        assert info.value.missing == ["absent"]
        with pytest.raises(WorkersMissingError, match="2 more agent"):
            await p.wait_for_agents(count=3, timeout=0.2)


async def test_names_are_unique_in_a_workspace(hub: Hub) -> None:
    async with hub.play(workers=[Quiet("taken")]) as p:
        with pytest.raises(HandshakeError, match="already taken"):
            await Quiet("taken").connect(p.address)


async def test_the_sender_is_the_authenticated_identity(hub: Hub) -> None:
    victim, observer = Quiet("victim"), Quiet("observer")
    async with hub.play(workers=[victim, observer]) as p:
        forger = await transport.connect(
            "127.0.0.1", p.port, identity=transport.make_identity("forger", extra={})
        )
        await forger.send(Chat(99), sender=victim.id)  # claims to be the victim
        async with asyncio.timeout(seconds(5)):
            await wait_until(lambda: len(observer.got) == 1)
        assert observer.got == [("forger", 99)]
        await forger.close()


async def test_on_run_starts_on_connect_and_stops_with_the_agent(hub: Hub) -> None:
    ticks: list[int] = []

    class Runner(BaseAgent):
        @on_run()
        async def loop(self) -> None:
            while True:
                ticks.append(1)
                await self.broadcast_message(Chat(len(ticks)))
                await asyncio.sleep(0.01)

    watcher = Quiet("watcher")
    async with hub.play(workers=[Runner("runner"), watcher]):
        async with asyncio.timeout(seconds(5)):
            await wait_until(lambda: len(watcher.got) >= 3)
    count = len(ticks)
    await asyncio.sleep(0.05)  # the loop was cancelled: no tick after the stop
    assert len(ticks) == count


async def test_a_worker_whose_playground_goes_away_reconnects() -> None:
    first = Hub(**BEAT)
    await first.start()
    port = first.port
    agent = Listener("phoenix")
    await agent.connect(first.address, reconnect=True)
    await first.finish()
    async with asyncio.timeout(seconds(5)):
        await wait_until(lambda: "hub" in agent.left)
    second = BasePlayGround(name="hub", port=port)
    await second.start()
    try:
        await second.wait_for_agents(names=["phoenix"], timeout=seconds(10))
        async with asyncio.timeout(seconds(5)):  # its on_connect for the new playground
            await wait_until(lambda: agent.joined.count("hub") == 2)
    finally:
        await agent.stop()
        await second.finish()
