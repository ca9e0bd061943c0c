"""Unfinished handshakes are capped overall and per source address, the oldest cut first."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import transport
from transport import Connection

from ..conftest import seconds, wait_until

HOST = "127.0.0.1"


async def idle(conn: Connection) -> None:
    await conn.wait_closed()


def half_open(port: int, source: str) -> socket.socket:
    """A TCP connection from `source` that never says Hello."""
    sock = socket.socket()
    sock.bind((source, 0))
    sock.connect((HOST, port))
    return sock


def cut(sock: socket.socket) -> bool:
    """Whether the server closed `sock` (it reads EOF or a reset)."""
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


async def test_one_address_cannot_take_the_handshakes_of_another() -> None:
    server = await transport.serve(idle, HOST, 0, open_timeout=seconds(30))
    server.max_handshakes, server.max_handshakes_per_address = 8, 4
    socks: list[socket.socket] = []
    try:

        def opened(count: int) -> Callable[[], bool]:
            return lambda: server.handshakes_in_progress() == count

        mine = [half_open(server.port, HOST) for _ in range(3)]
        socks += mine
        async with asyncio.timeout(seconds(10)):
            await wait_until(opened(3))
        flood = [half_open(server.port, "127.0.0.2") for _ in range(10)]
        socks += flood
        async with asyncio.timeout(seconds(10)):
            await wait_until(lambda: server.handshakes_evicted == 6)
            await wait_until(lambda: sum(map(cut, flood)) == 6)
        # the flood lost its own oldest six; the other address kept all of its three
        assert not any(cut(s) for s in flood[6:])
        assert not any(cut(s) for s in mine)
        assert server.handshakes_in_progress() == 7
        # and a real client from the other address still gets in
        conn = await transport.connect(HOST, server.port)
        await conn.close()
    finally:
        for sock in socks:
            sock.close()
        await server.aclose()
