"""Request/reply: `ask()` between agents and with the playground, over real TCP and over
NATS (a 3-node cluster)."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ceylon import (
    AgentDetail,
    AgentLeftError,
    AgentNotFoundError,
    AskTimeout,
    BaseAgent,
    BasePlayGround,
    CeylonError,
    NotConnectedError,
    RemoteHandlerError,
    on,
)

from ..conftest import BEAT, seconds


@dataclasses.dataclass
class Add:
    a: int
    b: int


@dataclasses.dataclass
class Sum:
    total: int
    by: str


@dataclasses.dataclass
class Fail:
    why: str


@dataclasses.dataclass
class Hang:
    seconds: float


@dataclasses.dataclass
class Silent:
    pass


@dataclasses.dataclass
class Unheard:
    pass


@dataclasses.dataclass
class Memo:
    seq: int


class Adder(BaseAgent):
    def __init__(self, name: str = "adder") -> None:
        super().__init__(name, role="adder")
        self.notes: list[int] = []
        self.hanging = asyncio.Event()
        self.cancelled = False

    @on(Add)
    async def add(self, message: Add, agent: AgentDetail) -> Sum:
        return Sum(message.a + message.b, f"{self.name} for {agent.name}")

    @on(Memo)
    async def note(self, message: Memo) -> None:
        self.notes.append(message.seq)

    @on(Fail)
    async def fail(self, message: Fail) -> Sum:
        secret = "not to be sent"  # noqa: F841 - a local the asker must never see
        raise ValueError(message.why)

    @on(Hang)
    async def hang(self, message: Hang) -> Sum:
        self.hanging.set()
        await asyncio.sleep(message.seconds)
        return Sum(0, self.name)

    @on(Silent)
    async def silent(self, message: Silent) -> None:
        return None


class Asker(BaseAgent):
    """Knows `Sum` (it handles one), so replies of that type decode here."""

    def __init__(self, name: str = "asker") -> None:
        super().__init__(name, role="asker")

    @on(Sum)
    async def sum(self, message: Sum) -> None:
        pass


class Hub(BasePlayGround):
    def __init__(self, nats: str | None = None) -> None:
        workspace = f"ask{secrets.token_hex(4)}" if nats else "default"
        super().__init__(name="hub", port=0, nats=nats, workspace=workspace, **BEAT)

    @on(Add)
    async def add(self, message: Add) -> Sum:
        return Sum(message.a * message.b, "hub")


@pytest.fixture(params=["tcp", "nats"])
async def hub(request: pytest.FixtureRequest) -> AsyncIterator[Hub]:
    """A playground in this process, listening on TCP or on NATS (each test runs twice)."""
    cluster = request.getfixturevalue("nats_cluster") if request.param == "nats" else None
    playground = Hub(cluster.url if cluster is not None else None)
    yield playground
    await playground.finish()


async def test_ask_returns_the_handlers_value_by_name_and_by_id(hub: Hub) -> None:
    adder, asker = Adder(), Asker()
    async with hub.play(workers=[adder, asker]):
        assert await asker.ask("adder", Add(2, 3)) == Sum(5, "adder for asker")
        assert await asker.ask(adder.id, Add(1, 1), timeout=seconds(5)) == Sum(2, "adder for asker")
        # the playground answers, and asks
        assert await asker.ask("hub", Add(4, 5)) == Sum(20, "hub")
        assert await hub.ask("adder", Add(7, 8)) == Sum(15, "adder for hub")
        many = await asyncio.gather(*(asker.ask("adder", Add(i, i)) for i in range(200)))
        assert [s.total for s in many] == [2 * i for i in range(200)]


async def test_ask_keeps_its_place_among_direct_messages(hub: Hub) -> None:
    adder, asker = Adder(), Asker()
    async with hub.play(workers=[adder, asker]):
        for seq in range(50):
            await asker.send_message("adder", Memo(seq))
        await asker.ask("adder", Add(0, 0))
        assert adder.notes == list(range(50))  # all handled before the ask's handler ran


async def test_a_raising_handler_fails_the_ask_with_its_type_and_message_only(hub: Hub) -> None:
    adder, asker = Adder(), Asker()
    async with hub.play(workers=[adder, asker]):
        with pytest.raises(RemoteHandlerError) as raised:
            await asker.ask("adder", Fail("bad input"))
        error = raised.value
        assert isinstance(error, CeylonError)
        assert (error.target, error.type_name) == ("adder", "Fail")
        assert error.message == "ValueError: bad input"
        assert "not to be sent" not in str(error) and "Traceback" not in str(error)
        # no handler, or a handler returning None: refused at once, saying which
        with pytest.raises(RemoteHandlerError, match="no handler"):
            await asker.ask("adder", Unheard())
        with pytest.raises(RemoteHandlerError, match="returned None"):
            await asker.ask("adder", Silent())
        assert await asker.ask("adder", Add(1, 2)) == Sum(3, "adder for asker")  # goes on


async def test_an_unknown_target_and_a_timeout_raise_naming_the_target(hub: Hub) -> None:
    adder, asker = Adder(), Asker()
    async with hub.play(workers=[adder, asker]):
        with pytest.raises(AgentNotFoundError) as missing:
            await asker.ask("nobody", Add(1, 2))
        assert missing.value.target == "nobody"
        timeout = seconds(0.3)
        with pytest.raises(AskTimeout) as late:
            await asker.ask("adder", Hang(seconds(30)), timeout=timeout)
        assert (late.value.target, late.value.timeout) == ("adder", timeout)
        assert isinstance(late.value, TimeoutError)


async def test_the_target_leaving_fails_the_ask_at_once(hub: Hub) -> None:
    adder, asker = Adder(), Asker()
    async with hub.play(workers=[adder, asker]):
        asking = asyncio.create_task(asker.ask("adder", Hang(seconds(60)), timeout=seconds(60)))
        async with asyncio.timeout(seconds(5)):
            await adder.hanging.wait()
        await adder.stop()
        async with asyncio.timeout(seconds(5)):  # far sooner than the ask's own timeout
            with pytest.raises(AgentLeftError) as left:
                await asking
        assert left.value.target == "adder"
        assert isinstance(left.value, AgentNotFoundError)


async def test_cancelling_the_asker_drops_the_reply(hub: Hub) -> None:
    adder, asker = Adder(), Asker()
    async with hub.play(workers=[adder, asker]):
        asking = asyncio.create_task(asker.ask("adder", Hang(seconds(0.2))))
        async with asyncio.timeout(seconds(5)):
            await adder.hanging.wait()
        asking.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asking
        assert len(asker._asks) == 0  # the late reply has nowhere to go
        async with asyncio.timeout(seconds(5)):
            await adder.wait_idle()  # the reply went out; the asker ignores it
        assert await asker.ask("adder", Add(2, 2)) == Sum(4, "adder for asker")
        assert asker.stats().dropped == {}


async def test_ask_without_a_playground_raises() -> None:
    asker = Asker()
    with pytest.raises(NotConnectedError):
        await asker.ask("adder", Add(1, 2))


@dataclasses.dataclass
class Private:
    value: int


class Secretive(BaseAgent):
    @on(Add)
    async def add(self, message: Add) -> Any:
        return Private(1)


async def test_a_reply_may_be_any_registered_type(hub: Hub) -> None:
    secretive, asker = Secretive("secretive"), Asker()
    async with hub.play(workers=[secretive, asker]):
        # registered by being sent; one process here, so the asker's registry has it too
        assert await asker.ask("secretive", Add(0, 0)) == Private(1)
