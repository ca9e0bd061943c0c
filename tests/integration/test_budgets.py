"""Budgets: members that ask without reading are cut, and the playground's memory holds."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from ceylon import BaseAgent, system

from ..conftest import BEAT_FLAGS, seconds
from .test_slow_consumers import raw_client


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def non_reading_asker(
    port: int, name: str, playground_id: str, asks: int
) -> asyncio.StreamWriter:
    """Handshake by hand, send `asks` ListAgents, never read an answer."""
    _, writer, protocol = await raw_client(port, name)
    assert protocol.identity is not None
    for n in range(asks):
        protocol.send_object(system.ListAgents(n), protocol.identity.id, playground_id)
        writer.write(protocol.data_to_send())
    return writer


async def test_askers_that_never_read_are_cut_and_memory_stays_bounded(spawn: Any) -> None:
    playground = spawn("-m", "ceylon", "playground", "--port", "0", *BEAT_FLAGS,
                       "--max-pending-bytes", str(2**20))  # fmt: skip
    match = await asyncio.to_thread(
        playground.wait_for_line, r"^listening on (\S+:\d+)", seconds(20)
    )
    address = match.group(1)
    port = int(address.rsplit(":", 1)[1])
    # a directory of about 1 MB: 64 agents with 15 KB of extra data each
    members = [BaseAgent(f"m{i}", extra_data={"blob": "x" * 15_000}) for i in range(64)]
    await asyncio.gather(*(m.connect(address) for m in members))
    writers = []
    try:
        here = members[0].connected_playground
        assert here is not None
        before = rss_mb(playground.pid)
        for i in range(16):
            writers.append(await non_reading_asker(port, f"asker{i}", here.id, 50))
        cut = [rf"agent asker{i} left: slow consumer" for i in range(16)]
        await asyncio.to_thread(playground.wait_for_lines, cut, seconds(30))
        after = rss_mb(playground.pid)
        print(f"playground RSS {before:.0f} -> {after:.0f} MB")
        assert after - before < 150, (before, after)  # 16 x 50 answers of 1 MB: 800 MB
        assert len(await members[0].get_connected_agents()) == 64  # the members stay
    finally:
        for writer in writers:
            writer.close()
        await asyncio.gather(*(m.stop() for m in members))
