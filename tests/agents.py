"""Agents the integration tests run in separate processes (``ceylon worker --agent ...``)."""

from __future__ import annotations

import asyncio
import dataclasses

from ceylon import AgentDetail, BaseAgent, on, on_connect, on_disconnect


@dataclasses.dataclass
class Note:
    sender: str
    seq: int
    text: str = "note"


@dataclasses.dataclass
class Command:
    action: str
    arg: str = ""
    count: int = 0


class Echoer(BaseAgent):
    """Does what a `Command` says and prints one line per thing it sees."""

    def __init__(self, name: str, role: str = "echoer") -> None:
        super().__init__(name, role=role)

    def say(self, line: str) -> None:
        print(f"{self.name} {line}", flush=True)

    @on(Command)
    async def command(self, cmd: Command, agent: AgentDetail) -> None:
        if cmd.action == "broadcast":
            for seq in range(cmd.count):
                await self.broadcast_message(Note(self.name, seq))
            self.say(f"broadcast {cmd.count}")
        elif cmd.action == "direct":
            await self.send_message(cmd.arg, Note(self.name, cmd.count, "direct"))
            self.say(f"sent direct to {cmd.arg}")
        elif cmd.action == "raise":
            raise RuntimeError("a handler failed on purpose")
        elif cmd.action == "sleep":
            await asyncio.sleep(float(cmd.arg))
        elif cmd.action == "reply":
            await self.send_message(agent.id, Note(self.name, cmd.count, "reply"))

    @on(Note)
    async def note(self, note: Note, agent: AgentDetail) -> None:
        self.say(f"got {note.text} {note.seq} from {agent.name}")

    @on_connect("*")
    async def joined(self, topic: str, agent: AgentDetail) -> None:
        self.say(f"saw {agent.name} join")

    @on_disconnect("*")
    async def left(self, topic: str, agent: AgentDetail) -> None:
        self.say(f"saw {agent.name} leave")
