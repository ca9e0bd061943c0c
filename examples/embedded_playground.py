"""A playground and its agents in one process, talking over real TCP on 127.0.0.1.

python examples/embedded_playground.py
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ceylon import AgentDetail, BasePlayGround, on  # noqa: E402
from examples.chat_agents import Chatter, Hello, Start  # noqa: E402


class Host(BasePlayGround):
    """A playground that is also an agent: it hears the chatters' broadcasts."""

    def __init__(self) -> None:
        super().__init__(name="host", port=0)
        self.heard: list[str] = []
        self.all_heard = asyncio.Event()

    @on(Hello)
    async def hello(self, message: Hello, agent: AgentDetail) -> None:
        self.heard.append(agent.name)
        print(f"host: broadcast from {agent.name}: {message.text}", flush=True)
        if len(self.heard) == 3:
            self.all_heard.set()


async def main() -> None:
    host = Host()
    chatters = [Chatter(f"c{i}") for i in range(1, 4)]
    async with host.play(workers=chatters) as playground:
        print(f"host: {len(chatters)} chatters joined on port {playground.port}", flush=True)
        await playground.broadcast_message(Start(by="host"))
        async with asyncio.timeout(10):
            await host.all_heard.wait()
            for chatter in chatters:
                await chatter.pinged.wait()
    print("host: done", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
