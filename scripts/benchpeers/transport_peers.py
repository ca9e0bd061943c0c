"""Benchmark peers for the transport: each role runs in its own process.

    python scripts/benchpeers/transport_peers.py IMPL ROLE [options]

IMPL is ``raw`` (plain asyncio streams + msgpack + the same 4-byte framing, writes
coalesced) or ``ceylon`` (the `transport` package). Servers print ``listening on
HOST:PORT``; measuring roles print one JSON line ``result {...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import msgpack
from loguru import logger

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from common import HEADER, HOST, listening, percentiles, result  # noqa: E402

import transport  # noqa: E402


@dataclasses.dataclass
class Tick:
    seq: int
    sent_at: float
    text: str


TEXT = "x" * 32  # makes the message's msgpack encoding 62 bytes


def message_dict(seq: int) -> dict[str, Any]:
    return {"seq": seq, "sent_at": time.time(), "text": TEXT}


# -- raw baseline ----------------------------------------------------------------------


async def raw_echo_server(args: argparse.Namespace) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                header = await reader.readexactly(4)
                (size,) = HEADER.unpack(header)
                body = await reader.readexactly(size)
                writer.write(header + body)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, HOST, 0)
    listening(server.sockets[0].getsockname()[1])
    async with server:
        await server.serve_forever()


async def raw_rtt_client(args: argparse.Namespace) -> None:
    reader, writer = await asyncio.open_connection(HOST, args.port)
    packb, unpackb = msgpack.Packer().pack, msgpack.unpackb
    samples = []
    for seq in range(args.count + args.warmup):
        started = time.perf_counter()
        payload = packb(message_dict(seq))
        writer.write(HEADER.pack(len(payload)) + payload)
        (size,) = HEADER.unpack(await reader.readexactly(4))
        reply = unpackb(await reader.readexactly(size))
        elapsed = time.perf_counter() - started
        assert reply["seq"] == seq
        if seq >= args.warmup:
            samples.append(elapsed)
    writer.close()
    result(**percentiles(samples))


async def raw_sink(args: argparse.Namespace) -> None:
    done = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        unpackb, unpack_from = msgpack.unpackb, HEADER.unpack_from
        buf = bytearray()
        count = 0
        started = 0.0
        deadline = float("inf")
        while True:
            data = await reader.read(262144)
            if not data:
                break
            if not started:
                started = time.perf_counter()
                deadline = started + args.seconds
            buf += data
            pos, end = 0, len(buf)
            while end - pos >= 4:
                (size,) = unpack_from(buf, pos)
                stop = pos + 4 + size
                if stop > end:
                    break
                unpackb(buf[pos + 4 : stop])
                count += 1
                pos = stop
            del buf[:pos]
            now = time.perf_counter()
            if now >= deadline:
                result(msgs_per_s=count / (now - started), count=count, seconds=now - started)
                break
        writer.close()
        done.set()

    server = await asyncio.start_server(handle, HOST, 0)
    listening(server.sockets[0].getsockname()[1])
    await done.wait()
    server.close()


async def raw_source(args: argparse.Namespace) -> None:
    reader, writer = await asyncio.open_connection(HOST, args.port)
    packb, pack_header = msgpack.Packer().pack, HEADER.pack
    seq = 0
    stop_at = time.monotonic() + args.seconds * 3
    try:
        while time.monotonic() < stop_at:
            frames = []
            for _ in range(256):
                payload = packb(message_dict(seq))
                frames.append(pack_header(len(payload)))
                frames.append(payload)
                seq += 1
            writer.write(b"".join(frames))
            await writer.drain()
            await asyncio.sleep(0)
    except ConnectionError:
        pass
    writer.close()


# -- ceylon transport ------------------------------------------------------------------


async def ceylon_echo_server(args: argparse.Namespace) -> None:
    async def echo(conn: transport.Connection) -> None:
        # A router's way: frames are relayed from the read path as bytes, no task hop.
        def relay(groups: list[transport.MessageGroup]) -> None:
            for group in groups:
                conn.forward_nowait("server", group.sender, group.count, group.tail())

        conn.set_group_callback(relay)
        await conn.wait_closed()

    server = await transport.serve(echo, HOST, 0)
    listening(server.port)
    await server.serve_forever()


async def ceylon_rtt_client(args: argparse.Namespace) -> None:
    conn = await transport.connect(HOST, args.port)
    samples = []
    for seq in range(args.count + args.warmup):
        started = time.perf_counter()
        await conn.send(Tick(seq, time.time(), TEXT))
        reply = conn.decode(await conn.recv())
        elapsed = time.perf_counter() - started
        assert reply.seq == seq
        if seq >= args.warmup:
            samples.append(elapsed)
    await conn.close()
    result(**percentiles(samples))


async def ceylon_sink(args: argparse.Namespace) -> None:
    done = asyncio.Event()
    transport.default_registry.register(Tick)

    async def handle(conn: transport.Connection) -> None:
        decode = conn.codec.decode
        count = 0
        groups = await conn.recv_groups()
        started = time.perf_counter()
        deadline = started + args.seconds
        while True:
            for group in groups:
                for tag, body in group.pairs():
                    decode(tag, body)
                count += group.count
            now = time.perf_counter()
            if now >= deadline:
                result(msgs_per_s=count / (now - started), count=count, seconds=now - started)
                break
            groups = await conn.recv_groups()
        done.set()

    server = await transport.serve(handle, HOST, 0)
    listening(server.port)
    await done.wait()
    await server.aclose()


async def ceylon_source(args: argparse.Namespace) -> None:
    conn = await transport.connect(HOST, args.port)
    stop_at = time.monotonic() + args.seconds * 3
    seq = 0
    send = conn.route("", None).send  # many messages along one route: its own sender
    try:
        # The streams idiom, as the raw source: queue 256 writes, then drain.
        while time.monotonic() < stop_at:
            for _ in range(256):
                send(Tick(seq, time.time(), TEXT))
                seq += 1
            await conn.drain()
            await asyncio.sleep(0)  # let the loop breathe (heartbeats), as the raw one does
    except transport.ConnectionClosed:
        pass
    await conn.close()


ROLES = {
    ("raw", "echo-server"): raw_echo_server,
    ("raw", "rtt-client"): raw_rtt_client,
    ("raw", "sink"): raw_sink,
    ("raw", "source"): raw_source,
    ("ceylon", "echo-server"): ceylon_echo_server,
    ("ceylon", "rtt-client"): ceylon_rtt_client,
    ("ceylon", "sink"): ceylon_sink,
    ("ceylon", "source"): ceylon_source,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("impl", choices=["raw", "ceylon"])
    parser.add_argument("role", choices=sorted({role for _, role in ROLES}))
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    assert len(msgpack.packb(message_dict(0))) == 62
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    logger.enable("transport")
    transport.run(ROLES[(args.impl, args.role)](args))


if __name__ == "__main__":
    main()
