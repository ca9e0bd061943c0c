"""Running message handlers: in order per sender, concurrently across senders, bounded.

Every sender gets a queue and, while it has work, one task that runs its messages'
handlers one after the other, so one sender's messages are handled in the order it sent
them. A slow handler holds up only its own sender's queue; the read path, heartbeats and
other senders go on. Work waiting in the queues is bounded per origin (the connection it
came in on): past `max_pending`, the origin is asked to pause, which turns a flood into
TCP backpressure; it is released at half. A handler that raises is logged with the
agent, the message type and the sender, and the next message is handled.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Any, Final

from loguru import logger

from .handlers import HandlerSpec
from .peer import AgentDetail

__all__ = ["DEFAULT_MAX_PENDING", "Dispatcher", "invoke"]

DEFAULT_MAX_PENDING: Final = 10_000

#: Called with (origin, True) to pause an origin and (origin, False) to release it.
PressureCallback = Callable[[str, bool], None]


async def invoke(spec: HandlerSpec, owner: Any, message: Any, sender: AgentDetail, now: int) -> Any:
    """Call one handler with what it declared.

    For on_connect/on_disconnect handlers `message` is the topic.
    """
    func = spec.func
    args = (message,) if spec.bound else (owner, message)
    if spec.kind != "message":
        return await func(*args, sender)
    if spec.wants_time:
        if spec.wants_agent:
            return await func(*args, time=now, agent=sender)
        return await func(*args, time=now)
    if spec.wants_agent:
        return await func(*args, agent=sender)
    return await func(*args)


class _Queue:
    __slots__ = ("items", "task")

    def __init__(self) -> None:
        self.items: collections.deque[tuple[tuple[HandlerSpec, ...], Any, AgentDetail, int, str]]
        self.items = collections.deque()
        self.task: asyncio.Task[None] | None = None


class Dispatcher:
    """Per-sender ordered, bounded execution of one agent's handlers.

    Args:
        owner: the agent whose handlers run (passed as ``self``).
        on_pressure: pauses and releases an origin (see the module docstring).
        max_pending: messages that may wait per origin before it is paused.
    """

    def __init__(
        self,
        owner: Any,
        *,
        on_pressure: PressureCallback | None = None,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        self.owner = owner
        self.max_pending = max_pending
        self._on_pressure = on_pressure
        self._queues: dict[str, _Queue] = {}
        self._pending: collections.Counter[str] = collections.Counter()
        self._paused: set[str] = set()
        self._closed = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._log = logger.bind(agent=getattr(owner, "name", "?"))

    @property
    def pending(self) -> int:
        """Messages queued or being handled."""
        return sum(self._pending.values())

    def submit(
        self,
        specs: tuple[HandlerSpec, ...],
        message: Any,
        sender: AgentDetail,
        now: int,
        origin: str = "",
    ) -> None:
        """Queue `message` from `sender` for `specs`, behind that sender's earlier ones."""
        if self._closed or not specs:
            return
        queue = self._queues.get(sender.id)
        if queue is None:
            queue = self._queues[sender.id] = _Queue()
        queue.items.append((specs, message, sender, now, origin))
        count = self._pending[origin] = self._pending[origin] + 1
        self._idle.clear()
        if count > self.max_pending and origin not in self._paused:
            self._paused.add(origin)
            if self._on_pressure is not None:
                self._on_pressure(origin, True)
        if queue.task is None:
            queue.task = asyncio.get_running_loop().create_task(self._drain(sender.id, queue))

    async def _drain(self, key: str, queue: _Queue) -> None:
        items = queue.items
        try:
            while items:
                specs, message, sender, now, origin = items[0]
                for spec in specs:
                    try:
                        await invoke(spec, self.owner, message, sender, now)
                    except Exception:
                        what = type(message).__name__ if spec.kind == "message" else spec.kind
                        self._log.exception(
                            "handler {} for {} from {} raised; the agent goes on",
                            spec.name,
                            what,
                            sender.name or sender.id,
                        )
                items.popleft()
                self._done(origin)
        finally:
            queue.task = None
            if not items and self._queues.get(key) is queue:
                del self._queues[key]

    def _done(self, origin: str) -> None:
        count = self._pending[origin] - 1
        if count:
            self._pending[origin] = count
        else:
            del self._pending[origin]
            if not self._pending:
                self._idle.set()
        if origin in self._paused and count <= self.max_pending // 2:
            self._paused.discard(origin)
            if self._on_pressure is not None:
                self._on_pressure(origin, False)

    def forget_origin(self, origin: str) -> None:
        """The origin is gone: stop tracking pressure for it (queued work still runs)."""
        self._paused.discard(origin)

    async def wait_idle(self) -> None:
        """Wait until every queued message has been handled."""
        await self._idle.wait()

    async def close(self) -> None:
        """Cancel every running handler and drop what is queued; wait for the tasks."""
        self._closed = True
        tasks = [q.task for q in self._queues.values() if q.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self._queues.clear()
        self._pending.clear()
        self._idle.set()
