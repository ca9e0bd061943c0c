"""The transport between separate processes: the echo example, SIGTERM and SIGSTOP."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import time
from typing import Any

import pytest

import transport
from transport import ConnectionClosedError, ConnectionClosedOK, ConnectionOptions

from ..conftest import BEAT, BEAT_FLAGS, seconds

ECHO = "examples/transport_echo.py"


@dataclasses.dataclass
class EchoProbe:
    seq: int
    sent_at: float
    text: str
    tags: tuple[str, ...] = ()


def start_echo_server(spawn: Any, *extra: str) -> tuple[Any, str, int]:
    server = spawn(ECHO, "serve", "--port", "0", *extra)
    match = server.wait_for_line(r"listening on (\S+):(\d+)", timeout=seconds(15))
    return server, match.group(1), int(match.group(2))


def test_echo_client_and_server_processes(spawn: Any) -> None:
    server, host, port = start_echo_server(spawn, "--token", "t0k")
    client = spawn(
        ECHO, "client", "--connect", f"{host}:{port}", "--count", "500", "--token", "t0k"
    )
    assert client.wait(timeout=seconds(30)) == 0, client.output()
    output = client.output()
    assert "round trips: 500" in output and "echoed in order" in output
    server.signal(signal.SIGTERM)
    assert server.wait(timeout=seconds(10)) == 0, server.output()


async def test_sigterm_says_goodbye_to_connected_clients(spawn: Any) -> None:
    server, host, port = start_echo_server(spawn)
    conn = await transport.connect(host, port)
    await conn.send(EchoProbe(1, 0.0, "hi"))
    async with asyncio.timeout(seconds(5)):
        assert conn.decode(await conn.recv()).seq == 1
    server.signal(signal.SIGTERM)
    with pytest.raises(ConnectionClosedOK, match="server closing"):
        async with asyncio.timeout(seconds(10)):
            await conn.recv()
    assert await asyncio.to_thread(server.wait, seconds(10)) == 0


async def test_a_stopped_server_process_is_declared_dead(spawn: Any) -> None:
    beat = ConnectionOptions(**BEAT)
    server, host, port = start_echo_server(spawn, *BEAT_FLAGS)
    conn = await transport.connect(host, port, options=beat)
    await conn.send(EchoProbe(1, 0.0, "hi"))
    async with asyncio.timeout(seconds(5)):
        await conn.recv()
    server.signal(signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:
        with pytest.raises(ConnectionClosedError, match="heartbeat timeout"):
            async with asyncio.timeout(seconds(10)):
                await conn.recv()
        assert time.monotonic() - stopped_at <= beat.heartbeat_timeout + seconds(0.5)
    finally:
        server.kill()
    await conn.wait_closed()
