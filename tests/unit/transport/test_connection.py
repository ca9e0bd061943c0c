"""`Connection` over real sockets (`socket.socketpair()`), no processes, no ports."""

from __future__ import annotations

import asyncio
import dataclasses
import socket

import pytest

from transport import Codec, Connection, ConnectionOptions, PeerInfo, Protocol
from transport.framing import encode_frame
from transport.protocol import CLIENT
from transport.wire import Pong, encode_record

from ...conftest import seconds, wait_until
from .pairs import close_all, connection_pair


@dataclasses.dataclass
class Item:
    seq: int
    text: str = "y" * 100


QUIET = ConnectionOptions(heartbeat_interval=None)


async def test_messages_round_trip_in_order() -> None:
    server, client, _ = await connection_pair(QUIET, QUIET)
    for i in range(500):
        client.send_nowait(Item(i), sender="client")
    got = []
    async with asyncio.timeout(seconds(5)):
        while len(got) < 500:
            got.extend(server.decode(e).seq for e in await server.recv_batch())
    assert got == list(range(500))
    await close_all(server, client)


class CountedWrites:
    """A transport whose writes are counted (everything else is the real one's)."""

    def __init__(self, real: asyncio.Transport) -> None:
        self.real = real
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        self.real.write(data)

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)


async def test_a_request_leaves_at_once_and_a_stream_in_one_write_per_two_iterations() -> None:
    server, client, _ = await connection_pair(QUIET, QUIET)
    counted = CountedWrites(client._transport)  # type: ignore[arg-type]
    client._transport = counted  # type: ignore[assignment]
    client.send_nowait(Item(0), sender="client")
    assert counted.writes == 1  # written in the call itself: nothing else was queued
    got: list[int] = []
    async with asyncio.timeout(seconds(5)):
        got.extend(server.decode(e).seq for e in await server.recv_batch())
    iterations, per_iteration = 20, 50  # ~5 KB an iteration: a stream
    before = counted.writes
    for i in range(iterations):
        for j in range(per_iteration):
            client.send_nowait(Item(1 + i * per_iteration + j), sender="client")
        await asyncio.sleep(0)  # one loop iteration
    async with asyncio.timeout(seconds(5)):
        while len(got) < 1 + iterations * per_iteration:
            got.extend(server.decode(e).seq for e in await server.recv_batch())
    assert got == list(range(1 + iterations * per_iteration))
    # the first message of the stream goes at once (the mode was request/response);
    # then each write carries two iterations' messages
    assert counted.writes - before <= 2 + iterations // 2
    await close_all(server, client)


async def test_the_backlog_counts_bytes_and_messages_and_signals_congestion() -> None:
    options = ConnectionOptions(
        heartbeat_interval=None,
        max_pending_bytes=32 * 1024,
        max_pending_messages=10_000,
        write_high_water=8 * 1024,
    )
    server, client, _ = await connection_pair(options, QUIET)
    signals: list[bool] = []
    server.set_congestion_callback(lambda conn, congested: signals.append(congested))
    client.pause_reading()
    sent = 0
    async with asyncio.timeout(seconds(10)):
        while not signals and sent < 100_000:
            server.send_nowait(Item(sent))
            sent += 1
            if sent % 100 == 0:
                await asyncio.sleep(0)  # let the loop write
    assert signals == [True] and server.congested
    assert server.pending_bytes > 32 * 1024
    client.resume_reading()
    got: list[int] = []
    async with asyncio.timeout(seconds(10)):
        while len(got) < sent:
            got.extend(client.decode(e).seq for e in await client.recv_batch())
    assert got == list(range(sent))  # nothing lost, nothing reordered
    assert signals == [True, False] and not server.congested
    await close_all(server, client)


async def test_send_waits_for_the_backlog_to_drain() -> None:
    options = ConnectionOptions(heartbeat_interval=None, write_high_water=4 * 1024)
    server, client, _ = await connection_pair(options, QUIET)
    client.pause_reading()
    for i in range(2000):
        server.send_nowait(Item(i))
    await asyncio.sleep(0)
    assert server.writing_paused
    waiting = asyncio.ensure_future(server.send(Item(2000)))
    await asyncio.sleep(0.05)  # a window in which nothing drains
    assert not waiting.done()
    client.resume_reading()
    async with asyncio.timeout(seconds(5)):
        await waiting
    await close_all(server, client)


async def test_unsolicited_pongs_do_not_keep_a_peer_alive() -> None:
    """A peer that never reads but sends Pongs of its own is declared dead."""
    loop = asyncio.get_running_loop()
    left, right = socket.socketpair()
    beat = ConnectionOptions(heartbeat_interval=seconds(0.1), heartbeat_timeout=seconds(0.5))
    from transport.protocol import SERVER

    hub = Protocol(SERVER, PeerInfo("hub", "hub", "", {}))
    _, server = await loop.connect_accepted_socket(lambda: Connection(hub, beat), sock=left)
    right.setblocking(False)
    raw = Protocol(CLIENT, PeerInfo("raw", "raw", "", {}))  # drives the handshake by hand
    await loop.sock_sendall(right, raw.data_to_send())
    async with asyncio.timeout(seconds(5)):
        while raw.peer is None:
            raw.receive_data(await loop.sock_recv(right, 65536))
        await server.wait_open()
    pong = encode_frame(encode_record(Pong(12345)))
    async with asyncio.timeout(seconds(5)):
        while not server.closed:  # never reads again, and claims to be alive
            await loop.sock_sendall(right, pong)
            await asyncio.sleep(seconds(0.05))  # the raw peer's pace
    assert "heartbeat timeout" in (server.close_reason or "")
    right.close()
    async with asyncio.timeout(seconds(5)):
        await server.wait_closed()


async def test_a_message_callback_gets_decoded_pairs_and_counts_bad_frames() -> None:
    server, client, _ = await connection_pair(QUIET, QUIET)
    seen: list[tuple[str, str | None, int]] = []
    server.set_message_callback(
        lambda sender, target, pairs: seen.extend(
            (sender, target, Codec().decode(t, b).seq) for t, b in pairs
        )
    )
    client._transport.write(encode_frame(b"\x93\x00\xa1c\xc0"))  # type: ignore[union-attr]
    client.send_nowait(Item(7), sender="c", target="x")
    async with asyncio.timeout(seconds(5)):
        await wait_until(lambda: bool(seen))
    assert seen == [("c", "x", 7)]
    assert sum(server.drops.values()) == 1 and not server.closed
    await close_all(server, client)


def test_options_are_checked() -> None:
    with pytest.raises(ValueError):
        ConnectionOptions(max_pending_bytes=0)
    with pytest.raises(ValueError):
        ConnectionOptions(max_buffer=1, max_pending_bytes=2)
