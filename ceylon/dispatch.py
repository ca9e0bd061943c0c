"""Running handlers: in order per sender, concurrently across senders, bounded.

Every sender gets a queue and, while it has work, one task that runs its messages'
handlers one after the other, so one sender's messages are handled in the order it sent
them. A slow handler holds up only its own sender's queue; the read path, heartbeats and
other senders go on. Work arrives in batches (the messages one frame brought), which
keeps the per-message cost to the handler call itself.

Work waiting in the queues is bounded per origin (the connection it came in on): past
`max_pending` messages the origin is asked to pause, which turns a flood into TCP
backpressure; it is released at half. A handler that raises is logged with the agent,
the message type and the sender, and the next message is handled.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from typing import Any, Final

from loguru import logger

from .handlers import HandlerSpec
from .peer import AgentDetail

__all__ = ["DEFAULT_MAX_PENDING", "AnswerCallback", "Batch", "Dispatcher", "invoke"]

DEFAULT_MAX_PENDING: Final = 10_000

_NOTHING: Final[tuple[str, ...]] = ()
_AGENT: Final = ("agent",)
_TIME: Final = ("time",)
_TIME_AGENT: Final = ("time", "agent")

#: Called with (origin, True) to pause an origin and (origin, False) to release it.
PressureCallback = Callable[[str, bool], None]
#: The handlers of one message, and the message (or, for on_connect/on_disconnect, the topic).
Item = tuple[tuple[HandlerSpec, ...], Any]


def invoke(
    spec: HandlerSpec, owner: Any, message: Any, sender: AgentDetail, now: int
) -> Awaitable[Any]:
    """Start one handler with what it declared; returns what to await.

    For on_connect/on_disconnect handlers `message` is the topic.
    """
    func = spec.func
    if spec.kind != "message":
        return func(message, sender) if spec.bound else func(owner, message, sender)
    order = spec.positional
    if order is not None and not spec.bound:  # the common case, by position
        if order == _AGENT:
            return func(owner, message, sender)
        if order == _NOTHING:
            return func(owner, message)
        if order == _TIME_AGENT:
            return func(owner, message, now, sender)
        if order == _TIME:
            return func(owner, message, now)
        return func(owner, message, sender, now)
    kwargs: dict[str, Any] = {}
    if spec.wants_time:
        kwargs["time"] = now
    if spec.wants_agent:
        kwargs["agent"] = sender
    return func(message, **kwargs) if spec.bound else func(owner, message, **kwargs)


#: Hears how the handlers of an asked message ended: (the first value one returned that
#: is not None, or None; the exception one raised, or None).
AnswerCallback = Callable[[Any, "BaseException | None"], None]


class Batch:
    """Messages of one sender that arrived together."""

    __slots__ = ("items", "sender", "now", "origin", "answer")

    def __init__(
        self,
        items: list[Item],
        sender: AgentDetail,
        now: int,
        origin: str,
        answer: AnswerCallback | None = None,
    ) -> None:
        self.items = items
        self.sender = sender
        self.now = now
        self.origin = origin
        self.answer = answer


class _Queue:
    __slots__ = ("batches", "task")

    def __init__(self) -> None:
        self.batches: collections.deque[Batch] = collections.deque()
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
        self._pending: dict[str, int] = {}
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
        """Queue one message from `sender`, behind that sender's earlier ones."""
        if specs:
            self.submit_batch([(specs, message)], sender, now, origin)

    def submit_batch(
        self,
        items: list[Item],
        sender: AgentDetail,
        now: int,
        origin: str,
        answer: AnswerCallback | None = None,
    ) -> None:
        """Queue messages from `sender`, in order, behind that sender's earlier ones.

        With `answer` (an asked message), it hears what the handlers returned or raised
        once they are done.
        """
        if self._closed or not items:
            return
        queue = self._queues.get(sender.id)
        if queue is None:
            queue = self._queues[sender.id] = _Queue()
        queue.batches.append(Batch(items, sender, now, origin, answer))
        count = self._pending[origin] = self._pending.get(origin, 0) + len(items)
        self._idle.clear()
        if count > self.max_pending and origin not in self._paused:
            self._paused.add(origin)
            if self._on_pressure is not None:
                self._on_pressure(origin, True)
        if queue.task is None:
            queue.task = asyncio.get_running_loop().create_task(self._drain(sender.id, queue))

    async def _drain(self, key: str, queue: _Queue) -> None:
        batches = queue.batches
        owner = self.owner
        try:
            while batches:
                batch = batches[0]
                sender, now, answer = batch.sender, batch.now, batch.answer
                for specs, message in batch.items:
                    for spec in specs:
                        try:
                            result = await invoke(spec, owner, message, sender, now)
                        except Exception as exc:
                            self._failed(spec, message, sender)
                            if answer is not None:
                                answer(None, exc)
                                answer = None
                        except asyncio.CancelledError as exc:
                            if self._closed:
                                raise  # close() is stopping us
                            self._cancelled(spec, message, sender)
                            if answer is not None:
                                answer(None, exc)
                                answer = None
                        else:
                            if answer is not None and result is not None:
                                answer(result, None)
                                answer = None
                        if self._closed:  # a handler stopped the agent
                            return
                if answer is not None:
                    answer(None, None)
                batches.popleft()
                self._done(batch.origin, len(batch.items))
        finally:
            queue.task = None
            if not batches and self._queues.get(key) is queue:
                del self._queues[key]

    def _cancelled(self, spec: HandlerSpec, message: Any, sender: AgentDetail) -> None:
        # The handler's own doing (it awaited something cancelled, or cancelled its task):
        # a failure of that handler, and this task reads on.
        task = asyncio.current_task()
        while task is not None and task.cancelling():
            task.uncancel()
        self._failed(spec, message, sender)

    def running_handler(self) -> bool:
        """Whether the caller is a handler run by this dispatcher."""
        task = asyncio.current_task()
        return task is not None and any(q.task is task for q in self._queues.values())

    def _failed(self, spec: HandlerSpec, message: Any, sender: AgentDetail) -> None:
        what = type(message).__name__ if spec.kind == "message" else spec.kind
        self._log.exception(
            "handler {} for {} from {} raised; the agent goes on",
            spec.name,
            what,
            sender.name or sender.id,
        )

    def _done(self, origin: str, count: int) -> None:
        left = self._pending[origin] - count
        if left:
            self._pending[origin] = left
        else:
            del self._pending[origin]
            if not self._pending:
                self._idle.set()
        if origin in self._paused and left <= self.max_pending // 2:
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
        this = asyncio.current_task()  # a handler closing its own agent finishes its work
        tasks = [q.task for q in self._queues.values() if q.task is not None and q.task is not this]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self._queues.clear()
        self._pending.clear()
        self._idle.set()
