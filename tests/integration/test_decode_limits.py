"""Decoding costs at most a small multiple of what arrives; the relay builds nothing."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import warnings
from typing import Any

import msgpack

from ceylon import AgentDetail, BaseAgent, BasePlayGround, on
from ceylon.drops import MessageDroppedWarning
from transport import DecodeError, DecodeLimits, Router, default_registry
from transport.framing import encode_frame
from transport.limits import unpack
from transport.wire import ROUTE_ROOM, messages_prefix

from ..agents import Note
from ..conftest import BEAT, seconds, wait_until
from .test_agents_processes import Observer, start_playground, start_worker
from .test_transport_sockets import close_writer, raw_handshake

# -- the bound itself, without sockets ----------------------------------------------------


def empty_maps(count: int) -> bytes:
    return b"\xdd" + count.to_bytes(4, "big") + b"\x80" * count


def test_an_array_announcing_more_elements_than_bytes_allow_is_refused_at_its_header() -> None:
    data = empty_maps(8_000_000)
    try:
        unpack(data)
    except DecodeError as exc:
        assert "limit" in exc.reason
    else:
        raise AssertionError("8 million empty maps were decoded")


def test_many_small_containers_are_counted_against_the_size() -> None:
    # Arrays short enough for the element cap, holding more maps than the size allows.
    inner = b"\xdc" + (4000).to_bytes(2, "big") + b"\x80" * 4000
    data = b"\xdc" + (200).to_bytes(2, "big") + inner * 200
    try:
        unpack(data)
    except DecodeError as exc:
        assert "too many arrays and maps" in exc.reason
    else:
        raise AssertionError("800,000 empty maps in 800 KB were decoded")


def test_binary_data_that_looks_like_containers_still_decodes() -> None:
    body = bytes(range(0x80, 0xA0)) * 40_000  # every byte a container's first byte
    assert unpack(msgpack.packb({"blob": body})) == {"blob": body}


def test_limits_are_configurable() -> None:
    assert unpack(msgpack.packb(list(range(100))), DecodeLimits()) == list(range(100))
    try:
        unpack(msgpack.packb(list(range(100))), DecodeLimits(floor=1, elements_divisor=64))
    except DecodeError:
        pass
    else:
        raise AssertionError("the tighter limit was not applied")


# -- a decode bomb against a real playground process ---------------------------------------


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def test_a_frame_of_millions_of_empty_maps_costs_the_playground_little(spawn: Any) -> None:
    # The task plugin has handlers of its own, so the playground decodes broadcasts too.
    playground, address = start_playground(spawn, "--plugin", "tasks", "--state", ":memory:")
    bystander = start_worker(spawn, address, "B")
    observer = Observer()
    await observer.connect(address)
    host, port = address.rsplit(":", 1)
    reader, writer = await raw_handshake(int(port))
    try:
        async with asyncio.timeout(seconds(20)):
            await wait_until(lambda: "B" in {d.name for d in observer_agents(observer)})
        before = rss_bytes(playground.pid)
        count = 8 * 2**20 - ROUTE_ROOM - 64
        payload = messages_prefix("raw", None, 1) + msgpack.packb("Note") + empty_maps(count)
        frame = encode_frame(payload)
        writer.write(frame)
        await writer.drain()
        # The bystander refuses the frame within its own limits and stays connected.
        await asyncio.to_thread(bystander.wait_for_line, r"dropped a frame", seconds(30))
        after = rss_bytes(playground.pid)
        assert after - before < 4 * len(frame), (before, after)
        await observer.broadcast_message(Note("observer", 1))
        await asyncio.to_thread(bystander.wait_for_line, r"^B got note 1", seconds(20))
        assert not any("left" in line for line in playground.drain() if " B " in line)
        assert not observer.left  # nobody missed a heartbeat
    finally:
        await close_writer(writer)
        await observer.stop()


def observer_agents(observer: Observer) -> list[AgentDetail]:
    link: Any = observer._link
    return list(link.known.values()) if link is not None else []


# -- the relay builds nothing -----------------------------------------------------------


built: list[str] = []


class Kind(enum.Enum):
    A = "a"


@dataclasses.dataclass
class Inner:
    kind: Kind

    def __post_init__(self) -> None:
        built.append("Inner")


@dataclasses.dataclass
class Outer:
    inner: Inner

    def __post_init__(self) -> None:
        built.append("Outer")


class Keeper(BaseAgent):
    def __init__(self, name: str) -> None:
        super().__init__(name, role="keeper")
        self.got: list[Outer] = []

    @on(Outer)
    async def outer(self, message: Outer) -> None:
        self.got.append(message)


async def test_a_playground_with_no_handlers_relays_without_building(
    monkeypatch: Any,
) -> None:
    decoded: list[Any] = []
    original = Router._local

    def spy(self: Router, *args: Any) -> None:
        decoded.append(args)
        original(self, *args)

    monkeypatch.setattr(Router, "_local", spy)
    playground = BasePlayGround(port=0, **BEAT)
    sender, receiver = BaseAgent("sender"), Keeper("receiver")
    async with playground.play(workers=[sender, receiver]):
        message = Outer(Inner(Kind.A))
        built.clear()
        await sender.broadcast_message(message)
        async with asyncio.timeout(seconds(10)):
            await wait_until(lambda: bool(receiver.got))
    assert receiver.got == [message]
    # Built once, by the receiver: neither the playground's relay nor anybody else.
    assert built == ["Inner", "Outer"]
    assert decoded == []  # the playground did not even decode the frame


class MenuCourse(enum.Enum):
    STARTER = "starter"


@dataclasses.dataclass
class MenuDish:
    course: MenuCourse


@dataclasses.dataclass
class MenuLine:
    dish: MenuDish | None


@dataclasses.dataclass
class MenuOrder:
    lines: list[MenuLine]


class Kitchen(BaseAgent):
    def __init__(self, name: str) -> None:
        super().__init__(name, role="kitchen")
        self.got: list[MenuOrder] = []

    @on(MenuOrder)  # registers MenuLine, MenuDish and MenuCourse with it
    async def order(self, message: MenuOrder) -> None:
        self.got.append(message)


async def test_a_nested_type_three_levels_deep_with_an_enum_is_registered() -> None:
    assert {"MenuCourse", "MenuDish", "MenuLine"} <= set(default_registry.tags())
    playground = BasePlayGround(port=0, **BEAT)
    kitchen, waiter = Kitchen("kitchen"), BaseAgent("waiter")
    async with playground.play(workers=[kitchen, waiter]):
        order = MenuOrder([MenuLine(MenuDish(MenuCourse.STARTER)), MenuLine(None)])
        await waiter.send_message("kitchen", order)
        async with asyncio.timeout(seconds(10)):
            await wait_until(lambda: bool(kitchen.got))
    assert kitchen.got == [order]
    assert kitchen.stats().dropped == {}


async def test_a_drop_is_counted_and_warned_even_with_logging_off() -> None:
    @dataclasses.dataclass
    class Unheard:
        n: int

    playground = BasePlayGround(port=0, **BEAT)
    listener, talker = BaseAgent("listener"), BaseAgent("talker")
    async with playground.play(workers=[listener, talker]):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", MessageDroppedWarning)
            await talker.send_message("listener", Unheard(1))  # nobody handles it there
            async with asyncio.timeout(seconds(10)):
                await wait_until(lambda: listener.stats().dropped.get("no handler", 0) == 1)
    assert listener.stats().received == 1
    assert talker.stats().sent == 1
    assert any(
        issubclass(w.category, MessageDroppedWarning) and "Unheard" in str(w.message)
        for w in caught
    )
