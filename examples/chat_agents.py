"""Chatty agents: a broadcast to everyone and a direct message to the next one.

Run them as separate processes against a playground::

    python -m ceylon playground --port 0          # prints: listening on 127.0.0.1:PORT
    python -m ceylon worker --connect 127.0.0.1:PORT --agent examples.chat_agents:Chatter --name w1
    python -m ceylon worker --connect 127.0.0.1:PORT --agent examples.chat_agents:Chatter --name w2

Any agent that broadcasts `Start` sets them off (``scripts/demo`` does).
"""

from __future__ import annotations

import asyncio
import dataclasses

from ceylon import AgentDetail, BaseAgent, on


@dataclasses.dataclass
class Start:
    """Tells every chatter to say hello."""

    by: str


@dataclasses.dataclass
class Hello:
    text: str


@dataclasses.dataclass
class Ping:
    text: str


class Chatter(BaseAgent):
    """On `Start`: broadcast a `Hello`, then send a direct `Ping` to the next chatter."""

    def __init__(self, name: str, role: str = "chatter") -> None:
        super().__init__(name, role=role)
        self.pinged = asyncio.Event()

    def say(self, line: str) -> None:
        print(f"{self.name}: {line}", flush=True)

    @on(Start)
    async def start(self, message: Start, agent: AgentDetail) -> None:
        await self.broadcast_message(Hello(f"hello from {self.name}"))
        chatters = sorted(d.name for d in await self.get_connected_agents() if d.role == self.role)
        if chatters:
            following = [n for n in chatters if n > self.name]
            target = following[0] if following else chatters[0]
            await self.send_message(target, Ping(f"{self.name} pings {target}"))

    @on(Hello)
    async def hello(self, message: Hello, agent: AgentDetail) -> None:
        self.say(f"broadcast from {agent.name}: {message.text}")

    @on(Ping)
    async def ping(self, message: Ping, agent: AgentDetail) -> None:
        self.say(f"direct from {agent.name}: {message.text}")
        self.pinged.set()
