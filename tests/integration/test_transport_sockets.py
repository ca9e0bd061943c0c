"""The transport over real sockets on 127.0.0.1 (port 0), in one process."""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trustme
from loguru import logger

import transport
from transport import (
    Connection,
    ConnectionClosedError,
    ConnectionClosedOK,
    ConnectionOptions,
    HandshakeError,
    Server,
)
from transport.framing import FrameDecoder, encode_frame
from transport.protocol import CLIENT, SERVER, HandshakeComplete, PeerAuthenticated, Protocol
from transport.wire import Envelope, decode_record, messages_prefix

from ..conftest import seconds, wait_until

HOST = "127.0.0.1"


@dataclasses.dataclass
class SocketProbe:
    seq: int
    text: str
    tags: tuple[str, ...] = ()


@pytest.fixture
def log_messages() -> Iterator[list[str]]:
    """Messages the transport logs during the test."""
    messages: list[str] = []
    sink = logger.add(lambda m: messages.append(m.record["message"]), level="DEBUG")
    logger.enable("transport")
    yield messages
    logger.disable("transport")
    logger.remove(sink)


async def echo(conn: Connection) -> None:
    async for envelope in conn:
        await conn.send_envelope(envelope._replace(sender="server", target=envelope.sender))


@pytest.fixture
async def make_server() -> AsyncIterator[Callable[..., Awaitable[Server]]]:
    servers: list[Server] = []

    async def start(handler: Any = echo, **kwargs: Any) -> Server:
        server = await transport.serve(handler, HOST, 0, **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.aclose()


async def test_port_zero_reports_the_bound_port_and_round_trips(make_server: Any) -> None:
    server = await make_server()
    assert server.port > 0
    conn = await transport.connect(HOST, server.port)
    try:
        await conn.send(SocketProbe(1, "hello", ("a",)))
        async with asyncio.timeout(seconds(5)):
            reply = conn.decode(await conn.recv())
        assert reply == SocketProbe(1, "hello", ("a",))
        assert conn.peer.name == "server"
    finally:
        await conn.close()


async def test_ten_thousand_messages_arrive_complete_and_in_order(make_server: Any) -> None:
    received: list[SocketProbe] = []
    done = asyncio.Event()

    async def collect(conn: Connection) -> None:
        async for envelope in conn:
            received.append(conn.decode(envelope))
            if len(received) == 10_000:
                done.set()

    server = await make_server(collect)
    conn = await transport.connect(HOST, server.port)
    for i in range(10_000):
        await conn.send(SocketProbe(i, "x" * (i % 50)))
    async with asyncio.timeout(seconds(20)):
        await done.wait()
    assert [p.seq for p in received] == list(range(10_000))
    assert all(p.text == "x" * (p.seq % 50) for p in received)
    await conn.close()


async def open_raw(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(HOST, port)


async def raw_handshake(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A hand-driven client: sans-I/O protocol over plain streams, for misbehaving on cue."""
    reader, writer = await open_raw(port)
    protocol = Protocol(CLIENT, transport.make_identity("raw"))
    writer.write(protocol.data_to_send())
    async with asyncio.timeout(seconds(5)):
        while not any(isinstance(e, HandshakeComplete) for e in protocol.events_received()):
            protocol.receive_data(await reader.read(4096))
    return reader, writer


async def close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    async with asyncio.timeout(seconds(5)):
        try:
            await writer.wait_closed()
        except ConnectionError:
            pass  # the peer reset it first: closed either way


async def read_until_eof(reader: asyncio.StreamReader) -> bytes:
    data = b""
    async with asyncio.timeout(seconds(5)):
        while chunk := await reader.read(65536):
            data += chunk
    return data


@pytest.mark.parametrize("after_handshake", [False, True])
async def test_garbage_from_one_client_drops_only_that_client(
    make_server: Any, log_messages: list[str], after_handshake: bool
) -> None:
    server = await make_server()
    good = await transport.connect(HOST, server.port)
    if after_handshake:
        reader, writer = await raw_handshake(server.port)
    else:
        reader, writer = await open_raw(server.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(range(256)))
    answer = await read_until_eof(reader)  # the server hangs up on the garbage
    await close_writer(writer)
    # It told the garbage client why before hanging up.
    decoder = FrameDecoder()
    decoder.feed(answer)
    reasons = [getattr(decode_record(p), "reason", "") for p in decoder.frames()]
    assert any("frame of" in r and "expected no more than" in r for r in reasons), reasons
    # The other client keeps working.
    await good.send(SocketProbe(2, "still here"))
    async with asyncio.timeout(seconds(5)):
        assert good.decode(await good.recv()) == SocketProbe(2, "still here")
    await good.close()
    assert any("expected no more than" in m for m in log_messages)


async def test_undecodable_frame_is_dropped_and_the_connection_stays(
    make_server: Any, log_messages: list[str]
) -> None:
    got: list[Envelope] = []
    arrived = asyncio.Event()

    async def collect(conn: Connection) -> None:
        async for envelope in conn:
            got.append(envelope)
            arrived.set()

    server = await make_server(collect)
    reader, writer = await raw_handshake(server.port)
    ok = messages_prefix("raw", None, 1) + msgpack.packb("") + msgpack.packb(msgpack.packb("ok"))
    writer.write(encode_frame(b"\xc1\xc1") + encode_frame(ok))
    async with asyncio.timeout(seconds(5)):
        await arrived.wait()
    assert msgpack.unpackb(got[0].body) == "ok"
    assert any("dropped an undecodable frame" in m for m in log_messages)
    await close_writer(writer)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def tls_files(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("tls")
    cert = ca.issue_cert("127.0.0.1", "localhost")
    paths = {
        "ca": directory / "ca.pem",
        "cert": directory / "cert.pem",
        "key": directory / "key.pem",
    }
    ca.cert_pem.write_to_path(str(paths["ca"]))
    cert.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    cert.private_key_pem.write_to_path(str(paths["key"]))
    return paths


async def test_tls_round_trip(make_server: Any, tls_files: dict[str, Path]) -> None:
    server_ctx = transport.server_context(tls_files["cert"], tls_files["key"])
    server = await make_server(ssl=server_ctx, token="tok")
    client_ctx = transport.client_context(tls_files["ca"])
    conn = await transport.connect(HOST, server.port, ssl=client_ctx, token="tok")
    await conn.send(SocketProbe(3, "over tls"))
    async with asyncio.timeout(seconds(5)):
        assert conn.decode(await conn.recv()) == SocketProbe(3, "over tls")
    await conn.close()


async def test_tls_client_trusting_another_ca_is_refused(
    make_server: Any, tls_files: dict[str, Path], tmp_path: Path
) -> None:
    server = await make_server(ssl=transport.server_context(tls_files["cert"], tls_files["key"]))
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    with pytest.raises(ssl.SSLCertVerificationError):
        await transport.connect(
            HOST, server.port, ssl=transport.client_context(other), open_timeout=seconds(5)
        )


async def test_wrong_token_is_refused_with_the_reason(
    make_server: Any, log_messages: list[str]
) -> None:
    server = await make_server(token="right")
    with pytest.raises(HandshakeError, match="authentication failed"):
        await transport.connect(HOST, server.port, token="wrong", open_timeout=seconds(5))
    with pytest.raises(HandshakeError, match="requires a token"):
        await transport.connect(HOST, server.port, open_timeout=seconds(5))
    assert any("authentication failed" in m for m in log_messages)


async def test_authorizer_refusal_reaches_the_client(make_server: Any) -> None:
    server = await make_server(authorize=lambda peer, key: f"name {peer.name!r} is taken")
    with pytest.raises(HandshakeError, match="name 'dup' is taken"):
        await transport.connect(HOST, server.port, identity=transport.make_identity("dup"))


async def test_open_timeout_against_a_silent_server() -> None:
    hung_up = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers the Hello; returns when the client gives up
        await close_writer(writer)
        hung_up.set()

    silent_server = await asyncio.start_server(silent, HOST, 0)
    port = silent_server.sockets[0].getsockname()[1]
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await transport.connect(HOST, port, open_timeout=0.3)
    assert time.monotonic() - started < seconds(2)
    async with asyncio.timeout(seconds(5)):
        await hung_up.wait()
    silent_server.close()
    await silent_server.wait_closed()


async def test_a_server_sending_a_huge_frame_in_the_handshake_fails_the_open() -> None:
    async def hostile(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(4096)  # the Hello
        writer.write((2**30).to_bytes(4, "big"))  # "a 1 GiB frame follows"
        await read_until_eof(reader)
        await close_writer(writer)

    hostile_server = await asyncio.start_server(hostile, HOST, 0)
    port = hostile_server.sockets[0].getsockname()[1]
    with pytest.raises(transport.HandshakeError, match="protocol error in the handshake"):
        await transport.connect(HOST, port, open_timeout=seconds(5))
    hostile_server.close()
    await hostile_server.wait_closed()


FAST_BEAT = dict(heartbeat_interval=seconds(0.1), heartbeat_timeout=seconds(0.6))


async def test_a_client_that_stops_reading_and_answering_is_declared_dead(
    make_server: Any,
) -> None:
    closed: asyncio.Future[tuple[float, str]] = asyncio.get_running_loop().create_future()

    async def watch(conn: Connection) -> None:
        try:
            async for _ in conn:
                pass
        except ConnectionClosedError as exc:
            closed.set_result((time.monotonic(), exc.reason))

    server = await make_server(watch, options=ConnectionOptions(**FAST_BEAT))
    reader, writer = await raw_handshake(server.port)
    went_silent = time.monotonic()  # from here on the raw client neither reads nor answers
    async with asyncio.timeout(seconds(5)):
        declared_at, reason = await closed
    assert "heartbeat timeout" in reason
    assert declared_at - went_silent <= FAST_BEAT["heartbeat_timeout"] + seconds(0.3)
    await close_writer(writer)


async def test_a_server_that_stops_answering_is_declared_dead_by_the_client() -> None:
    accepted: list[asyncio.StreamWriter] = []
    stop_muting = asyncio.Event()

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        protocol = Protocol(SERVER, transport.make_identity("mute"))
        while True:
            data = await reader.read(4096)
            if not data:
                return
            protocol.receive_data(data)
            if any(isinstance(e, PeerAuthenticated) for e in protocol.events_received()):
                protocol.accept()
                writer.write(protocol.data_to_send())
                accepted.append(writer)
                await stop_muting.wait()  # stop reading and answering until the test ends
                return

    mute_server = await asyncio.start_server(mute, HOST, 0)
    port = mute_server.sockets[0].getsockname()[1]
    conn = await transport.connect(HOST, port, options=ConnectionOptions(**FAST_BEAT))
    went_silent = time.monotonic()
    with pytest.raises(ConnectionClosedError, match="heartbeat timeout"):
        async with asyncio.timeout(seconds(5)):
            await conn.recv()
    assert time.monotonic() - went_silent <= FAST_BEAT["heartbeat_timeout"] + seconds(0.3)
    await conn.wait_closed()
    stop_muting.set()
    mute_server.close()
    for writer in accepted:
        await close_writer(writer)
    await mute_server.wait_closed()


async def test_a_peer_that_stops_reading_a_flood_is_dropped_not_buffered(
    make_server: Any,
) -> None:
    flooded: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    limit = 1 * 2**20

    async def flood(conn: Connection) -> None:
        try:
            for i in range(1_000_000):  # bounded; the overflow stops it long before
                conn.send_nowait(SocketProbe(i, "x" * 1000))
                if i % 100 == 0:
                    await asyncio.sleep(0)  # let the loop write
        except ConnectionClosedError as exc:
            flooded.set_result(exc.reason)

    options = ConnectionOptions(
        max_buffer=limit,
        max_pending_bytes=limit // 2,
        write_high_water=64 * 1024,
        heartbeat_interval=None,
    )
    server = await make_server(flood, options=options)
    reader, writer = await raw_handshake(server.port)  # and then never reads
    async with asyncio.timeout(seconds(10)):
        reason = await flooded
    assert "peer is not reading" in reason
    await close_writer(writer)


async def test_receive_backpressure_bounds_the_queue_and_loses_nothing(
    make_server: Any,
) -> None:
    gate = asyncio.Event()
    seen: list[int] = []
    max_queue = 50
    total = 100_000  # ~25 MB: more than the kernel buffers hold
    server_conn: list[Connection] = []
    all_seen = asyncio.Event()

    async def slow(conn: Connection) -> None:
        server_conn.append(conn)
        await gate.wait()
        async for envelope in conn:
            seen.append(conn.decode(envelope).seq)
            if len(seen) == total:
                all_seen.set()
                return

    async def produce() -> None:
        for i in range(total):
            await conn.send(SocketProbe(i, "y" * 200))

    server = await make_server(slow, options=ConnectionOptions(max_queue=max_queue))
    conn = await transport.connect(HOST, server.port)
    sender = asyncio.create_task(produce())
    # The flood turns into backpressure: the server stops reading, the sender waits.
    async with asyncio.timeout(seconds(20)):
        await wait_until(
            lambda: bool(server_conn) and server_conn[0].reading_paused and conn.writing_paused
        )
    assert not sender.done(), "the sender was never held back"
    # Reading pauses after the chunk that crossed the limit: one read may overshoot.
    one_read = 256 * 1024 // 230 + 1
    assert len(server_conn[0]._inbox) <= max_queue + one_read
    gate.set()
    async with asyncio.timeout(seconds(30)):
        await sender
        await all_seen.wait()
    assert seen == list(range(total))
    await conn.close()


async def test_handler_error_costs_only_its_connection(
    make_server: Any, log_messages: list[str]
) -> None:
    async def picky(conn: Connection) -> None:
        async for envelope in conn:
            if conn.decode(envelope).text == "boom":
                raise RuntimeError("handler bug")
            await conn.send(SocketProbe(0, "ok"), target=envelope.sender)

    server = await make_server(picky)
    first = await transport.connect(HOST, server.port)
    second = await transport.connect(HOST, server.port)
    await first.send(SocketProbe(1, "boom"))
    with pytest.raises(ConnectionClosedOK):
        async with asyncio.timeout(seconds(5)):
            await first.recv()
    await second.send(SocketProbe(2, "fine"))
    async with asyncio.timeout(seconds(5)):
        assert second.decode(await second.recv()).text == "ok"
    await second.close()
    assert any("connection handler failed" in m for m in log_messages)


async def test_server_close_says_goodbye_to_every_client_concurrently(make_server: Any) -> None:
    server = await make_server()
    clients = await asyncio.gather(*(transport.connect(HOST, server.port) for _ in range(20)))
    started = time.monotonic()
    await server.aclose()
    assert time.monotonic() - started < seconds(3)
    for client in clients:
        with pytest.raises(ConnectionClosedOK, match="server closing"):
            async with asyncio.timeout(seconds(5)):
                await client.recv()
        await client.wait_closed()
    assert not server.connections


async def test_close_flushes_what_was_queued(make_server: Any) -> None:
    got: list[int] = []
    finished = asyncio.Event()

    async def collect(conn: Connection) -> None:
        try:
            async for envelope in conn:
                got.append(conn.decode(envelope).seq)
        finally:
            finished.set()

    server = await make_server(collect)
    conn = await transport.connect(HOST, server.port)
    for i in range(500):
        conn.send_nowait(SocketProbe(i, "z"))
    await conn.close("bye")
    async with asyncio.timeout(seconds(5)):
        await finished.wait()
    assert got == list(range(500))
    with pytest.raises(ConnectionClosedOK):
        await conn.send(SocketProbe(0, "after close"))


async def test_message_callback_gets_queued_and_new_messages_in_order(make_server: Any) -> None:
    seen: list[int] = []
    all_in = asyncio.Event()
    ready = asyncio.Event()

    async def router(conn: Connection) -> None:
        await ready.wait()  # some messages are queued before the callback is set

        def on_groups(sender: str, target: str | None, pairs: list[tuple[str, bytes]]) -> None:
            seen.extend(conn.codec.decode(tag, body).seq for tag, body in pairs)
            if len(seen) == 200:
                all_in.set()

        conn.set_message_callback(on_groups)
        await conn.wait_closed()

    server = await make_server(router)
    conn = await transport.connect(HOST, server.port)
    for i in range(100):
        await conn.send(SocketProbe(i, "early"))
    await conn.drain()
    ready.set()
    for i in range(100, 200):
        await conn.send(SocketProbe(i, "late"))
    async with asyncio.timeout(seconds(5)):
        await all_in.wait()
    assert seen == list(range(200))
    await conn.close()


async def test_recv_groups_and_recv_batch(make_server: Any) -> None:
    got: list[int] = []
    done = asyncio.Event()

    async def consume(conn: Connection) -> None:
        batch = await conn.recv_batch(3)
        got.extend(conn.decode(e).seq for e in batch)
        while len(got) < 50:
            for group in await conn.recv_groups():
                got.extend(conn.codec.decode(t, b).seq for t, b in group.pairs())
        done.set()

    server = await make_server(consume)
    conn = await transport.connect(HOST, server.port)
    for i in range(50):
        conn.send_nowait(SocketProbe(i, "x"))
    async with asyncio.timeout(seconds(5)):
        await done.wait()
    assert got == list(range(50))
    await conn.close()


async def test_an_identity_too_large_for_the_handshake_is_refused_before_any_io() -> None:
    huge = transport.PeerInfo("id", "name", "role", {"blob": "x" * 70_000})
    with pytest.raises(ValueError, match="does not fit a handshake frame"):
        await transport.serve(echo, HOST, 0, identity=huge)
    with pytest.raises(ValueError, match="does not fit a handshake frame"):
        await transport.connect(HOST, 9, identity=huge)  # raised before connecting
    long_name = transport.PeerInfo("id", "n" * 300, "role", {})
    with pytest.raises(ValueError, match="the name is over 256 characters"):
        await transport.connect(HOST, 9, identity=long_name)
