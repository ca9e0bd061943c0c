"""The router over real sockets (`socket.socketpair()`), no processes, no ports."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
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
        self.unroutable: list[tuple[str, str | None, list[str], str]] = []
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
    assert hub.unroutable == [("a", "nobody", ["Hop"], "the agent is not connected")]
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


def _total_pending(hub: Hub) -> int:
    """The bytes the hub holds for all its open connections, as its global cap counts."""
    return sum(conn.pending_bytes for conn in hub.servers.values() if not conn.closed)


async def test_the_global_cap_cuts_the_largest_queues_first_and_spares_a_reader() -> None:
    cap = 400 * 1024
    # No grace expiry and no pausing within the test: only the global cap cuts here.
    hub = Hub(RouterOptions(grace=seconds(60), pause_share=2**40, max_total_pending=cap))
    router = hub.router
    servers = hub.servers
    source = await hub.join("source")
    reader = await hub.join("reader")
    for key in ("big", "mid", "small"):
        (await hub.join(key)).pause_reading()  # never reads: the hub's queue for it grows
    got: list[Any] = []  # what the reader received: broadcasts and markers
    expected = 0  # messages routed to the reader so far
    sent = 0  # broadcasts sent so far
    peak = 0

    async def routed() -> None:
        # The reader receives what was sent before as it reads on: once it has all, the
        # hub has routed everything `source` sent so far.
        nonlocal peak
        try:
            got.extend(await receive(reader, expected - len(got)))
        except TimeoutError:
            states = {key: conn.close_reason or "open" for key, conn in servers.items()}
            raise AssertionError(f"the reader stopped receiving: {states}") from None
        peak = max(peak, _total_pending(hub))

    async def preload(key: str, level: int) -> None:
        # Direct messages to `key` until the hub holds `level` bytes for it; a marker
        # (seq -1) to the reader after each batch tells when the batch was routed.
        nonlocal expected
        while servers[key].pending_bytes < level:
            for _ in range(10):
                source.send_nowait(Hop(-1), target=key, sender="source")
            source.send_nowait(Hop(-1), target="reader", sender="source")
            expected += 1
            await routed()

    async def flood_until(done: Callable[[], bool]) -> None:
        # Broadcasts in small batches (about 2.5 KB a receiver), each routed before the next.
        nonlocal expected, sent
        while not done():
            for _ in range(10):
                source.send_nowait(Hop(sent), sender="source")
                sent += 1
            expected += 10
            await routed()

    # Distinct head starts, under the cap together: broadcasts add the same to each, so
    # the order big > mid > small holds throughout.
    async with asyncio.timeout(seconds(10)):
        for key, level in (("big", 120 * 1024), ("mid", 70 * 1024), ("small", 20 * 1024)):
            await preload(key, level)
    assert router.slow_consumers == 0 and _total_pending(hub) <= cap
    for cuts, (victim, spared) in enumerate(
        (("big", ("mid", "small")), ("mid", ("small",)), ("small", ())), start=1
    ):
        cut = servers[victim]
        async with asyncio.timeout(seconds(10)):
            # Over the cap, then no more: the next check has a standing total to cut.
            await flood_until(lambda cut=cut: _total_pending(hub) > cap or cut.closed)
            await wait_until(lambda cuts=cuts: router.slow_consumers >= cuts)
        assert cut.closed, {key: conn.close_reason for key, conn in servers.items()}
        reason = cut.close_reason or ""
        assert "slow consumer" in reason and "the playground holds" in reason, reason
        assert f"over {cap}" in reason, reason
        assert router.slow_consumers == cuts, victim
        assert _total_pending(hub) <= cap, victim
        for key in (*spared, "reader", "source"):
            assert not servers[key].closed, (victim, key)
    # With every idle receiver gone, the reader alone takes a flood larger than the cap.
    async with asyncio.timeout(seconds(20)):
        target = sent + 2000  # about 460 KB
        await flood_until(lambda: sent >= target)
    assert peak <= cap + 64 * 1024, peak  # one batch beyond the cap at most
    assert router.slow_consumers == 3
    assert not servers["reader"].closed and not reader.closed
    assert [s for s in (Codec().decode(e.tag, e.body).seq for e in got) if s >= 0] == list(
        range(sent)
    )
    await hub.close()


async def test_a_request_from_a_congested_asker_is_refused_and_the_asker_cut() -> None:
    hub = Hub(RouterOptions(grace=seconds(60)))
    router = hub.router
    attentive = await hub.join("attentive")
    asker = await hub.join("asker")
    asker.pause_reading()  # asks, but does not read the answers
    server = hub.servers["asker"]
    assert not router.refuse_request(server)  # nothing waiting for it yet: answered
    sent = 0
    while not server.congested and sent < 100_000:  # answers pile up unread
        assert router.send("asker", Hop(sent))
        sent += 1
    assert server.congested, "the unread answers never congested the asker"
    assert router.refuse_request(server)
    reason = server.close_reason or ""
    assert server.closed and router.slow_consumers == 1
    assert "slow consumer" in reason and "it keeps asking without reading the answers" in reason
    assert not router.refuse_request(server)  # already cut: nothing more to do
    assert router.slow_consumers == 1
    # A connection that reads what it is sent is answered, not cut.
    attentive_server = hub.servers["attentive"]
    assert not attentive_server.congested
    assert not router.refuse_request(attentive_server)
    assert not attentive_server.closed and router.slow_consumers == 1
    assert router.send("attentive", Hop(7))
    (envelope,) = await receive(attentive, 1)
    assert Codec().decode(envelope.tag, envelope.body) == Hop(7)
    # The asker learns why once it reads again.
    asker.resume_reading()
    async with asyncio.timeout(seconds(5)):
        await asyncio.gather(asker.wait_closed(), server.wait_closed())
    assert "it keeps asking without reading the answers" in (asker.close_reason or "")
    # Both ends are done: aborting them again would trip asyncio 3.11, whose transport
    # closed by a flush forgets it is lost (`abort()` calls a loop it has let go).
    del hub.servers["asker"], hub.clients["asker"]
    await hub.close()
