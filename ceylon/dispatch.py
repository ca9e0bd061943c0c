"""Running handlers: in order per sender, concurrently across senders, bounded.

Every sender gets a queue and, while it has work, one task that runs its messages'
handlers one after the other, so one sender's messages are handled in the order it sent
them. A slow handler holds up only its own sender's queue; the read path, heartbeats and
other senders go on. Work arrives in batches (the messages one frame brought), which
keeps the per-message cost to the handler call itself.

Messages usually wait still encoded (`submit_encoded`): each is built only when its
turn comes, just before its handlers run, and is gone once they are done. A queue then
holds bytes, which the garbage collector never scans, instead of thousands of freshly
built objects that it would scan again and again while they wait (measured: a fifth
of a busy receiver's time). One that cannot be built is handed to `on_build_failed`
(counted and reported by the agent) in its place in the order.

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

__all__ = [
    "DEFAULT_MAX_PENDING",
    "AnswerCallback",
    "Batch",
    "BuildCallback",
    "BuildFailedCallback",
    "Builder",
    "Dispatcher",
    "invoke",
]

DEFAULT_MAX_PENDING: Final = 10_000

_NOTHING: Final[tuple[str, ...]] = ()
_FAILED: Final = object()  # what `_build_again` gives for a body nobody could build
_AGENT: Final = ("agent",)
_TIME: Final = ("time",)
_TIME_AGENT: Final = ("time", "agent")

#: Called with (origin, True) to pause an origin and (origin, False) to release it.
PressureCallback = Callable[[str, bool], None]
#: The handlers of one message, and the message (or, for on_connect/on_disconnect, the topic).
Item = tuple[tuple[HandlerSpec, ...], Any]
#: A builder of one message from its encoded body; raises if it cannot be built.
Builder = Callable[[bytes], Any]
#: Gives what builds a run of encoded bodies of one tag: a builder, and the general one
#: to ask when the first raises (None: the first is the general one); asked once per run
#: (`transport.Codec.builders`).
BuildCallback = Callable[[str, list[bytes]], tuple[Builder, "Builder | None"]]
#: Hears of a message that could not be built: (tag, body, the error, sender, direct).
BuildFailedCallback = Callable[[str, bytes, Exception, AgentDetail, bool], None]


def invoke(
    spec: HandlerSpec, owner: Any, message: Any, sender: AgentDetail, now: int
) -> Awaitable[Any]:
    """Start one handler with what it declared; returns what to await.

    For on_connect/on_disconnect handlers `message` is the topic. A method taking the
    message alone is called by `Dispatcher` itself (``spec.message_only``), one call less.
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
    """Messages of one sender that arrived together.

    Either built messages with their handlers (`items` of `Item`, `tag` None) or a run
    of encoded bodies of one `tag`, all for the handlers `specs`, built in turn.
    """

    __slots__ = ("items", "sender", "now", "origin", "answer", "specs", "tag", "direct")

    def __init__(
        self,
        items: list[Any],
        sender: AgentDetail,
        now: int,
        origin: str,
        answer: AnswerCallback | None = None,
        specs: tuple[HandlerSpec, ...] = (),
        tag: str | None = None,
        direct: bool = False,
    ) -> None:
        self.items = items
        self.sender = sender
        self.now = now
        self.origin = origin
        self.answer = answer
        self.specs = specs
        self.tag = tag
        self.direct = direct


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
        build: gives the builder of the messages of a tag queued encoded (`submit_encoded`).
        on_build_failed: hears of each one `build` refused.
    """

    def __init__(
        self,
        owner: Any,
        *,
        on_pressure: PressureCallback | None = None,
        max_pending: int = DEFAULT_MAX_PENDING,
        build: BuildCallback | None = None,
        on_build_failed: BuildFailedCallback | None = None,
    ) -> None:
        self.owner = owner
        self.max_pending = max_pending
        self._on_pressure = on_pressure
        self._build = build
        self._on_build_failed = on_build_failed
        self._queues: dict[str, _Queue] = {}
        #: the loop the handlers run in (a dispatcher lives within one run of its agent)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: dict[str, int] = {}
        self._paused: set[str] = set()
        self._closed = False
        # Waiters of wait_idle(): idle is `not self._pending`, checked where it changes
        # (an Event would cost two calls per message received).
        self._idle_waiters: list[asyncio.Future[None]] = []
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
        self._enqueue(Batch(items, sender, now, origin, answer))

    def submit_encoded(
        self,
        specs: tuple[HandlerSpec, ...],
        tag: str,
        bodies: list[bytes],
        sender: AgentDetail,
        now: int,
        origin: str,
        direct: bool,
    ) -> None:
        """Queue encoded messages of one `tag` from `sender`, for the handlers `specs`,
        behind that sender's earlier ones; each is built when its turn comes.

        Raises:
            RuntimeError: the dispatcher was made without `build`.
        """
        if self._closed or not bodies:
            return
        if self._build is None:
            raise RuntimeError("submit_encoded() needs a dispatcher made with build=")
        self._enqueue(Batch(bodies, sender, now, origin, None, specs, tag, direct))

    def _enqueue(self, batch: Batch) -> None:
        sender, origin = batch.sender, batch.origin
        queue = self._queues.get(sender.id)
        if queue is None:
            queue = self._queues[sender.id] = _Queue()
        queue.batches.append(batch)
        count = self._pending[origin] = self._pending.get(origin, 0) + len(batch.items)
        if count > self.max_pending and origin not in self._paused:
            self._paused.add(origin)
            if self._on_pressure is not None:
                self._on_pressure(origin, True)
        if queue.task is None:
            loop = self._loop
            if loop is None:  # asked once: CPython asks the OS for its pid on every call
                loop = self._loop = asyncio.get_running_loop()
            queue.task = loop.create_task(self._drain(sender.id, queue))

    async def _drain(self, key: str, queue: _Queue) -> None:
        batches = queue.batches
        owner = self.owner
        build: Any = self._build
        try:
            while batches:
                batch = batches[0]
                sender, now, answer = batch.sender, batch.now, batch.answer
                specs, tag = batch.specs, batch.tag
                build_one: Any = None
                general: Builder | None = None
                if tag is not None:
                    build_one, general = build(tag, batch.items)
                for entry in batch.items:
                    if tag is None:
                        specs, message = entry
                    else:
                        try:
                            message = build_one(entry)
                        except Exception as exc:
                            message = self._build_again(general, tag, entry, exc, batch)
                            if message is _FAILED:
                                continue
                    for spec in specs:
                        try:
                            if spec.message_only:  # `invoke`'s commonest case, inlined
                                result = await spec.func(owner, message)
                            else:
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

    def _build_again(
        self, general: Builder | None, tag: str, body: bytes, exc: Exception, batch: Batch
    ) -> Any:
        """What the general builder makes of a body the first one refused, or `_FAILED`."""
        if general is not None:
            try:
                return general(body)
            except Exception as again:
                exc = again
        self._build_failed(tag, body, exc, batch)
        return _FAILED

    def _build_failed(self, tag: str, body: bytes, exc: Exception, batch: Batch) -> None:
        callback = self._on_build_failed
        if callback is None:
            self._log.warning("dropped a {} message: {}", tag, exc)
            return
        try:
            callback(tag, body, exc, batch.sender, batch.direct)
        except Exception:
            self._log.exception("on_build_failed raised; the agent goes on")

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
                self._wake_idle()
        if origin in self._paused and left <= self.max_pending // 2:
            self._paused.discard(origin)
            if self._on_pressure is not None:
                self._on_pressure(origin, False)

    def forget_origin(self, origin: str) -> None:
        """The origin is gone: stop tracking pressure for it (queued work still runs)."""
        self._paused.discard(origin)

    async def wait_idle(self) -> None:
        """Wait until every queued message has been handled."""
        if self._pending:
            waiter = asyncio.get_running_loop().create_future()
            self._idle_waiters.append(waiter)
            await waiter

    def _wake_idle(self) -> None:
        waiters, self._idle_waiters = self._idle_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

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
        self._wake_idle()
