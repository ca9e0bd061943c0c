"""Open `Connection` pairs over `socket.socketpair()`: real sockets, no server, no ports."""

from __future__ import annotations

import asyncio
import socket

from transport import Connection, ConnectionOptions, PeerInfo, Protocol
from transport.protocol import CLIENT, SERVER

from ...conftest import seconds


async def connection_pair(
    server_options: ConnectionOptions | None = None,
    client_options: ConnectionOptions | None = None,
    *,
    client_id: str = "client",
) -> tuple[Connection, Connection, socket.socket]:
    """``(server side, client side, the client's raw socket)``, both handshaken.

    The raw socket lets a test stop the client side from reading at the kernel level
    (`Connection.pause_reading`).
    """
    loop = asyncio.get_running_loop()
    left, right = socket.socketpair()
    server_proto = Protocol(SERVER, PeerInfo("hub", "hub", "", {}))
    client_proto = Protocol(CLIENT, PeerInfo(client_id, client_id, "", {}))
    _, server = await loop.connect_accepted_socket(
        lambda: Connection(server_proto, server_options), sock=left
    )
    _, client = await loop.create_connection(
        lambda: Connection(client_proto, client_options), sock=right
    )
    async with asyncio.timeout(seconds(5)):
        await asyncio.gather(server.wait_open(), client.wait_open())
    return server, client, right


async def close_all(*conns: Connection) -> None:
    for conn in conns:
        conn.abort()
    async with asyncio.timeout(seconds(5)):
        await asyncio.gather(*(conn.wait_closed() for conn in conns))
