"""The router over real sockets (`socket.socketpair()`), no processes, no ports."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import msgpack

from transport import (
    Codec,
    Connection,
    ConnectionOptions,
    Router,
    RouterOptions,
    SlowConsumerPolicy,
)
from transport.framing import encode_frame
from transport.wire import messages_prefix

from ...conftest import seconds, wait_until
from .pairs import close_all, connection_pair


@dataclasses.dataclass
class Hop:
    seq: int
    text: str = "x" * 200


SMALL = ConnectionOptions(
    heartbeat_interval=None,
    max_pending_bytes=64 * 1024,
    max_pending_messages=1000,
    write_high_water=16 * 1024,
)


class Hub:
    """A router with connection pairs plugged in, recording what it hands over."""

    def __init__(self, options: RouterOptions | None = None) -> None:
        self.local: list[tuple[str, str | None, list[tuple[str, bytes]]]] = []
        self.unroutable: list[tuple[str, str, list[str]]] = []
        self.introduced: list[tuple[str, str]] = []
        self.router = Router(
            "hub",
            on_local=lambda *args: self.local.append(args),
            on_unroutable=lambda *args: self.unroutable.append(args),
            introduce=lambda receiver, sender: self.introduced.append((receiver, sender)),
            options=options,
        )
        self.clients: dict[str, Connection] = {}
        self.servers: dict[str, Connection] = {}

    async def join(self, key: str, options: ConnectionOptions | None = None) -> Connection:
        server, client, _ = await connection_pair(options or SMALL, options or SMALL)
        self.router.add(key, server)
        self.servers[key] = server
        self.clients[key] = client
        return client

    async def close(self) -> None:
        await close_all(*self.servers.values(), *self.clients.values())


async def receive(conn: Connection, count: int, limit: float = 5.0) -> list[Any]:
    got: list[Any] = []
    async with asyncio.timeout(seconds(limit)):
        while len(got) < count:
            got.extend(await conn.recv_batch())
    return got


async def test_a_broadcast_reaches_every_other_connection_stamped_with_its_key() -> None:
    hub = Hub()
    a = await hub.join("a")
    b = await hub.join("b")
    c = await hub.join("c")
    a.send_nowait(Hop(1), sender="forged")  # the frame's claim is ignored
    for conn in (b, c):
        (envelope,) = await receive(conn, 1)
        assert envelope.sender == "a" and envelope.target is None
        assert Codec().decode(envelope.tag, envelope.body) == Hop(1)
    assert ("b", "a") in hub.introduced and ("c", "a") in hub.introduced
    assert [(origin, target) for origin, target, _ in hub.local] == [("a", None)]
    await hub.close()


async def test_forwarded_bytes_are_the_bytes_received() -> None:
    hub = Hub()
    hub.router.deliver_broadcasts = False
    a = await hub.join("a")
    b = await hub.join("b")
    # A body no codec here could decode (an unknown extension): relayed as is.
    body = msgpack.packb(msgpack.ExtType(99, b"opaque"))
    a.send_packed_nowait("a", None, "Unknown", body)
    (envelope,) = await receive(b, 1)
    assert (envelope.tag, envelope.body) == ("Unknown", body)
    assert hub.local == []  # nothing decoded for the hub itself
    await hub.close()


async def test_direct_messages_go_to_their_target_or_are_reported() -> None:
    hub = Hub()
    a = await hub.join("a")
    b = await hub.join("b")
    a.send_nowait(Hop(2), target="b", sender="a")
    a.send_nowait(Hop(3), target="nobody", sender="a")
    a.send_nowait(Hop(4), target="hub", sender="a")
    (envelope,) = await receive(b, 1)
    assert envelope.target == "b" and envelope.sender == "a"
    async with asyncio.timeout(seconds(5)):
        await wait_until(lambda: bool(hub.unroutable and hub.local))
    assert hub.unroutable == [("a", "nobody", ["Hop"])]
    assert [(o, t, [tag for tag, _ in pairs]) for o, t, pairs in hub.local] == [
        ("a", "hub", ["Hop"])
    ]
    await hub.close()


async def test_an_undecodable_frame_for_the_hub_costs_only_that_frame() -> None:
    hub = Hub()
    a = await hub.join("a")
    transport_ = hub.servers["a"]
    # A route prefix, then a tail that is not msgpack at all; a good frame follows.
    frame = encode_frame(messages_prefix("a", "hub", 1) + b"\xc1\xc1\xc1")
    a._transport.write(frame)  # type: ignore[union-attr]
    a.send_nowait(Hop(5), target="hub", sender="a")
    async with asyncio.timeout(seconds(5)):
        await wait_until(lambda: bool(hub.local))
    assert transport_.drops["malformed"] == 1 and not transport_.closed
    await hub.close()


async def test_a_receiver_that_stops_reading_is_cut_and_the_others_keep_up() -> None:
    grace = seconds(0.5)
    hub = Hub(RouterOptions(grace=grace))
    source = await hub.join("source")
    fast = await hub.join("fast")
    slow = await hub.join("slow")
    slow.pause_reading()  # the kernel buffers fill, then the hub's queue for it
    sent = 0
    cut_at = None
    started = time.monotonic()
    got: list[Any] = []
    async with asyncio.timeout(seconds(20)):
        while sent < 20_000 and time.monotonic() - started < seconds(10):
            for _ in range(100):
                source.send_nowait(Hop(sent), sender="source")
                sent += 1
            await source.drain()
            got.extend(await fast.recv_batch())
            if cut_at is None and hub.servers["slow"].closed:
                cut_at = time.monotonic()
            if cut_at is not None and sent >= 3000:
                break
        got.extend(await receive(fast, sent - len(got)))
    assert cut_at is not None, "the slow consumer was never cut"
    assert cut_at - started < grace + seconds(1.5)
    assert "slow consumer" in (hub.servers["slow"].close_reason or "")
    assert [Codec().decode(e.tag, e.body).seq for e in got] == list(range(sent))
    assert hub.router.slow_consumers == 1
    await hub.close()


async def test_the_drop_policy_spares_the_connection_and_reports_the_count() -> None:
    hub = Hub(RouterOptions(slow_consumer=SlowConsumerPolicy.DROP, grace=seconds(0.2)))
    source = await hub.join("source")
    slow = await hub.join("slow")
    slow.pause_reading()
    async with asyncio.timeout(seconds(20)):
        sent = 0
        while hub.router.messages_dropped == 0 and sent < 50_000:
            for _ in range(100):
                source.send_nowait(Hop(sent), sender="source")
                sent += 1
            await source.drain()
            await asyncio.sleep(0)
        slow.resume_reading()
        received = 0
        while slow.dropped_by_peer == 0:
            received += len(await slow.recv_batch())
    assert not hub.servers["slow"].closed
    assert slow.dropped_by_peer == hub.router.messages_dropped
    await hub.close()


def test_router_options_check_their_values() -> None:
    assert RouterOptions(slow_consumer="drop").slow_consumer is SlowConsumerPolicy.DROP  # type: ignore[arg-type]
    for bad in ({"grace": 0}, {"slow_consumer": "ignore"}):
        try:
            RouterOptions(**bad)  # type: ignore[arg-type]
        except ValueError:
            continue
        raise AssertionError(f"{bad} accepted")
