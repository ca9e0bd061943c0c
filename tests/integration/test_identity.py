"""Identity: no member can take over another's id, shadow a name, or poison the directory.

The victim and the playground are processes of their own; the attacker is this test,
knowing the workspace token (there is none here) and whatever ids it can see.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack
import pytest

import transport
from ceylon import AgentDetail, BaseAgent, HandshakeError, on
from ceylon.drops import MessageDroppedWarning
from ceylon.testing import Process
from transport.protocol import CLIENT, HandshakeComplete, Protocol

from ..agents import Command, Note
from ..conftest import BEAT_FLAGS, seconds, wait_until


class Witness(BaseAgent):
    def __init__(self, name: str = "witness") -> None:
        super().__init__(name, role="witness")
        self.notes: list[tuple[str, str]] = []
        self.got = asyncio.Event()

    @on(Note)
    async def note(self, note: Note, agent: AgentDetail) -> None:
        self.notes.append((agent.name, note.text))
        self.got.set()


def start(spawn: Any) -> tuple[Process, str, Process]:
    playground = spawn("-m", "ceylon", "playground", "--port", "0", *BEAT_FLAGS)
    address = playground.wait_for_line(r"^listening on (\S+:\d+)", timeout=seconds(20)).group(1)
    victim = spawn("-m", "ceylon", "worker", "--connect", address, "--agent",
                   "tests.agents:Echoer", "--name", "victim", *BEAT_FLAGS)  # fmt: skip
    victim.wait_for_line(r"^agent victim connected", timeout=seconds(20))
    return playground, address, victim


async def victim_id(witness: BaseAgent) -> str:
    return next(a.id for a in await witness.get_connected_agents() if a.name == "victim")


async def assert_victim_still_answers(witness: Witness) -> None:
    witness.got.clear()
    await witness.send_message("victim", Command("reply", count=7))
    async with asyncio.timeout(seconds(10)):
        await witness.got.wait()
    assert witness.notes[-1] == ("victim", "reply")


async def test_an_impersonator_with_the_victims_id_and_name_is_refused(spawn: Any) -> None:
    playground, address, victim = await asyncio.to_thread(start, spawn)
    witness = Witness()
    await witness.connect(address)
    try:
        impostor = BaseAgent("victim")
        impostor.id = await victim_id(witness)
        with pytest.raises(HandshakeError, match="resume secret"):
            await impostor.connect(address)
        await assert_victim_still_answers(witness)  # it kept its connection and messages
        assert "replaced by a new connection" not in victim.output()
    finally:
        await witness.stop()


async def test_ids_and_names_are_one_namespace(spawn: Any) -> None:
    playground, address, victim = await asyncio.to_thread(start, spawn)
    witness = Witness()
    await witness.connect(address)
    try:
        shadow = BaseAgent("shadow")
        shadow.id = "victim"  # an id equal to the victim's name
        with pytest.raises(HandshakeError, match="another agent's name"):
            await shadow.connect(address)
        twin = BaseAgent(await victim_id(witness))  # a name equal to the victim's id
        with pytest.raises(HandshakeError, match="another agent's id"):
            await twin.connect(address)
        await assert_victim_still_answers(witness)  # send_message("victim") still reaches it
    finally:
        await witness.stop()


async def raw_hello(port: int, extra: dict[str, Any]) -> str:
    """Handshake by hand with `extra` in the Hello; returns the refusal (or "")."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    protocol = Protocol(CLIENT, transport.PeerInfo("raw-id", "raw", "", extra))
    writer.write(protocol.data_to_send())
    try:
        async with asyncio.timeout(seconds(10)):
            while True:
                data = await reader.read(65536)
                if not data:
                    return protocol.closed.reason if protocol.closed else "closed"
                protocol.receive_data(data)
                writer.write(protocol.data_to_send())
                for event in protocol.events_received():
                    if isinstance(event, HandshakeComplete):
                        return ""
                if protocol.closed is not None:
                    return protocol.closed.reason
    finally:
        writer.close()


async def test_a_poisoned_hello_is_refused_and_later_joins_work(spawn: Any) -> None:
    playground, address, victim = await asyncio.to_thread(start, spawn)
    port = int(address.rsplit(":", 1)[1])
    ext = {"extra_data": {"x": msgpack.ExtType(1, b"\x00")}}
    assert "extension" in await raw_hello(port, ext)
    big = {"extra_data": {"x": "y" * 30_000}}  # under the handshake frame limit
    assert "over the limit" in await raw_hello(port, big)
    keys = {"extra_data": {1: "not text"}}
    assert "text keys" in await raw_hello(port, keys)
    # nothing was poisoned: an agent with membership handlers joins, the directory answers
    witness = Witness()
    await witness.connect(address)
    try:
        names = sorted(a.name for a in await witness.get_connected_agents())
        assert names == ["playground", "victim"]
        status = await witness.playground_status(timeout=seconds(10))
        assert sorted(a.name for a in status.agents) == ["victim", "witness"]
    finally:
        await witness.stop()


async def test_the_legitimate_agent_reclaims_its_id_after_a_drop() -> None:
    from ceylon import BasePlayGround

    from ..conftest import BEAT

    playground = BasePlayGround(port=0, **BEAT)
    agent = BaseAgent("comeback")
    async with playground.play(workers=[agent]):
        first = agent.resume_secret
        assert first
        await agent.stop()
        await agent.connect(playground.address)  # same id: it has the secret
        assert agent.resume_secret and agent.resume_secret != first  # a new one each time
        stranger = BaseAgent("comeback")
        stranger.id = agent.id
        stranger.resume_secret = first  # an old secret no longer counts
        with pytest.raises(HandshakeError, match="resume secret"):
            await stranger.connect(playground.address)
        await agent.stop()


async def test_a_tag_naming_an_unregistered_subclass_builds_nothing() -> None:
    import dataclasses

    from ceylon import BasePlayGround

    from ..conftest import BEAT

    built: list[str] = []

    @dataclasses.dataclass
    class Registered:
        value: int = 0

    @dataclasses.dataclass
    class Sneaky(Registered):  # defined here, never registered
        def __post_init__(self) -> None:
            built.append("Sneaky")  # a constructor a peer must not be able to run

    class Hub(BasePlayGround):
        @on(Registered)
        async def got(self, message: Registered) -> None:
            built.append(type(message).__name__)

    hub = Hub(port=0, **BEAT)
    await hub.start()
    try:
        # a hostile peer writes a frame whose tag names the subclass, then a real one
        conn = await transport.connect(
            "127.0.0.1", hub.port, identity=transport.PeerInfo("raw-id", "raw", "", {})
        )
        with pytest.warns(MessageDroppedWarning, match="Sneaky.*unknown tag"):
            conn.send_packed_nowait(
                "raw-id", hub.id, Sneaky.__qualname__, msgpack.packb({"value": 1})
            )
            conn.send_nowait(Registered(2), target=hub.id, sender="raw-id")
            async with asyncio.timeout(seconds(5)):
                await wait_until(lambda: "Registered" in built)
        await conn.close()
    finally:
        await hub.finish()
    assert built == ["Registered"]  # the Sneaky was dropped, unbuilt
    assert hub.stats().dropped.get("unknown tag", 0) >= 1
