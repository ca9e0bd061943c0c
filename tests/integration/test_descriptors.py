"""Half-open connections cannot starve legitimate joins, even at a 1,024 descriptor limit."""

from __future__ import annotations

import asyncio
import resource
import socket
import sys
from typing import Any

from ceylon import BaseAgent

from ..conftest import BEAT_FLAGS, seconds

#: The playground runs with its descriptor limit pinned at 1,024 (soft and hard).
PINNED = (
    "import resource, runpy, sys; resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024)); "
    "sys.argv = ['ceylon', *sys.argv[1:]]; runpy.run_module('ceylon', run_name='__main__')"
)


async def test_legitimate_agents_join_while_half_open_connections_pile_up(spawn: Any) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2048 <= hard:  # this test process holds the attacker's sockets
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    playground = spawn("-c", PINNED, "playground", "--port", "0", *BEAT_FLAGS)
    match = await asyncio.to_thread(
        playground.wait_for_line, r"listening on (\S+:\d+) \(room for about 960 conn", seconds(20)
    )
    address = match.group(1)
    port = int(address.rsplit(":", 1)[1])
    half_open: list[socket.socket] = []
    try:
        loop = asyncio.get_running_loop()
        budget = min(1200, resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 200)
        for _ in range(budget):  # connect, then never say a word
            sock = socket.socket()
            sock.setblocking(False)
            await loop.sock_connect(sock, ("127.0.0.1", port))
            half_open.append(sock)
        agents = [BaseAgent(f"legit{i}") for i in range(100)]
        async with asyncio.timeout(seconds(30)):
            await asyncio.gather(*(agent.connect(address) for agent in agents))
        assert all(agent.connected_playground is not None for agent in agents)
        await asyncio.gather(*(agent.stop() for agent in agents))
        output = await asyncio.to_thread(playground.output)
        assert "cut short to make room" in output, output[-2000:]
        assert "Too many open files" not in output
    finally:
        for sock in half_open:
            sock.close()
    print(f"{len(half_open)} half-open connections; 100 of 100 agents joined", file=sys.stderr)
