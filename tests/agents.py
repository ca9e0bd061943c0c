"""Agents the integration tests run in separate processes (``ceylon worker --agent ...``)."""

from __future__ import annotations

import asyncio
import dataclasses
import time

from ceylon import AgentDetail, BaseAgent, on, on_connect, on_disconnect, on_run


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
        elif cmd.action == "mixed":  # every third a broadcast, the others direct to arg
            for seq in range(cmd.count):
                if seq % 3:
                    await self.send_message(cmd.arg, Note(self.name, seq, "direct"))
                else:
                    await self.broadcast_message(Note(self.name, seq, "all"))

    @on(Note)
    async def note(self, note: Note, agent: AgentDetail) -> None:
        self.say(f"got {note.text} {note.seq} from {agent.name}")

    @on_connect("*")
    async def joined(self, topic: str, agent: AgentDetail) -> None:
        self.say(f"saw {agent.name} join")

    @on_disconnect("*")
    async def left(self, topic: str, agent: AgentDetail) -> None:
        self.say(f"saw {agent.name} leave")


# -- slow consumers (tests/integration/test_slow_consumers.py) -------------------------
# Times they print are time.time(), to compare across processes (and with the
# playground's log lines).


@dataclasses.dataclass
class Flood:
    seq: int
    payload: str = ""


@dataclasses.dataclass
class Beat:
    seq: int
    sent: float


def _say(name: str, line: str) -> None:
    print(f"{name} {line}", flush=True)


class Flooder(BaseAgent):
    """From connect, broadcasts `Flood`s as fast as it can: `count` at most, for `seconds`
    at most."""

    def __init__(
        self,
        name: str,
        role: str = "flooder",
        count: int = 300_000,
        seconds: float = 3.0,
        size: int = 1024,
    ) -> None:
        super().__init__(name, role=role)
        self.count = count
        self.seconds = seconds
        self.size = size

    @on_run()
    async def flood(self) -> None:
        payload = "x" * self.size
        _say(self.name, f"flood start {time.time():.6f}")
        deadline = time.monotonic() + self.seconds
        sent = 0
        while sent < self.count and time.monotonic() < deadline:
            await self.broadcast_message(Flood(sent, payload))
            sent += 1
            if sent % 64 == 0:  # let this side's reads and heartbeats run too
                await asyncio.sleep(0)
        _say(self.name, f"flood done {sent} {time.time():.6f}")


class Pacer(BaseAgent):
    """Once `target` has joined, sends it `count` `Beat`s at `rate` a second, on a fixed
    schedule."""

    def __init__(
        self,
        name: str,
        role: str = "pacer",
        target: str = "observer",
        rate: float = 20.0,
        count: int = 200,
    ) -> None:
        super().__init__(name, role=role)
        self.target = target
        self.rate = rate
        self.count = count
        self._present = asyncio.Event()

    @on_connect("*")
    async def joined(self, topic: str, agent: AgentDetail) -> None:
        if agent.name == self.target:
            self._present.set()

    @on_run()
    async def pace(self) -> None:
        await self._present.wait()
        start = time.monotonic()
        _say(self.name, f"pace start {time.time():.6f}")
        for seq in range(self.count):
            await asyncio.sleep(max(0.0, start + seq / self.rate - time.monotonic()))
            await self.send_message(self.target, Beat(seq, time.time()))
        _say(self.name, f"pace done {self.count} {time.time():.6f}")


class Recorder(BaseAgent):
    """Prints when each `Beat` arrives, and who leaves; ignores `Flood`s."""

    def __init__(self, name: str, role: str = "recorder") -> None:
        super().__init__(name, role=role)

    @on(Beat)
    async def beat(self, beat: Beat, agent: AgentDetail) -> None:
        _say(
            self.name,
            f"beat {beat.seq} from {agent.name} sent {beat.sent:.6f} at {time.time():.6f}",
        )

    @on_disconnect("*")
    async def left(self, topic: str, agent: AgentDetail) -> None:
        _say(self.name, f"saw {agent.name} leave at {time.time():.6f}")


class Sluggard(BaseAgent):
    """Takes `delay` seconds over each of its first `slow_count` `Flood`s (all of them
    by default), none over the rest; prints its own counts when asked."""

    def __init__(
        self, name: str, role: str = "sluggard", delay: float = 0.05, slow_count: int = 2**62
    ) -> None:
        super().__init__(name, role=role)
        self.delay = delay
        self.slow_count = slow_count
        self.handled = 0

    @on(Flood)
    async def flood(self, message: Flood) -> None:
        if self.handled < self.slow_count:
            await asyncio.sleep(self.delay)
        self.handled += 1

    @on(Command)
    async def command(self, cmd: Command, agent: AgentDetail) -> None:
        if cmd.action == "stats":
            stats = self.stats()
            _say(self.name, f"stats handled {self.handled} upstream {stats.dropped_upstream}")


class Looper(BaseAgent):
    """A run loop that says when it starts and then broadcasts a `Note` every `every`
    seconds (`count` at most per start)."""

    def __init__(self, name: str, role: str = "looper", every: float = 0.05, count: int = 2000):
        super().__init__(name, role=role)
        self.every = every
        self.count = count
        self.starts = 0

    @on_run()
    async def loop(self) -> None:
        self.starts += 1
        _say(self.name, f"run loop start {self.starts}")
        for seq in range(self.count):
            await self.broadcast_message(Note(self.name, seq, "loop"))
            await asyncio.sleep(self.every)  # the loop's own pace
