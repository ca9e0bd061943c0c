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

A sender whose queue is idle when a few messages (`START_NOW_MAX`) arrive on the read
path (a loop callback, no task running) has them started at once, in that callback
(`_start_now`), inside a spare task kept for that: handlers see a task of their own as
ever (`current_task`, `asyncio.timeout`, `running_handler`), and one that waits carries
on in it while a new spare is made. A handler's answer then leaves in the loop
iteration its request came in, and no task is made per message: on a worker sharing
its CPU, making the task and its loop iteration cost ~10 us of a ~60 us turn from
receipt to answer. The spare is made current with the hooks asyncio's own eager tasks
use (`asyncio.tasks._enter_task`/`_leave_task`, 3.11 to 3.13); on a Python without
them every drain starts in a task of its own, as before.

Work waiting in the queues is bounded per origin (the connection it came in on): past
`max_pending` messages the origin is asked to pause, which turns a flood into TCP
backpressure; it is released at half. A handler that raises is logged with the agent,
the message type and the sender, and the next message is handled.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
from collections.abc import Awaitable, Callable, Coroutine, Generator
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

try:  # how asyncio's own eager tasks (3.12+) make a task current without stepping it
    from asyncio.tasks import _enter_task, _leave_task

    _START_NOW_MAX = 8
except ImportError:  # pragma: no cover - without them every drain starts in a task
    _START_NOW_MAX = 0
#: Batches of at most this many messages arriving on the read path for an idle sender
#: are started at once (see the module docstring); a bigger batch saves nothing that
#: counts by it and goes to a task as before (broadcast to 10 agents measured ~4%
#: slower when every batch started at once).
START_NOW_MAX: Final = _START_NOW_MAX

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
    message alone, or with its sender, is called by `Dispatcher` itself
    (``spec.message_only``, ``spec.with_agent``), one call less.
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


class _Carrier(Coroutine[Any, Any, None]):
    """The body of a spare task (see `Dispatcher._start_now`).

    Idle, it waits on `idle`. A drain started inside it and left waiting (on
    `yielded`) is handed over with `take`: the task's next step hands `yielded` on (the
    task then waits for it, as if it had stepped the drain itself), and every later
    step goes to the drain, in the context the drain started in.
    """

    __slots__ = ("idle", "coro", "yielded", "context")

    def __init__(self, idle: asyncio.Future[None]) -> None:
        self.idle = idle
        self.coro: Coroutine[Any, Any, None] | None = None
        self.yielded: Any = None
        self.context: contextvars.Context | None = None

    def take(self, coro: Coroutine[Any, Any, None], yielded: Any, context: Any) -> None:
        self.coro, self.yielded, self.context = coro, yielded, context
        if not self.idle.done():  # (a handler may have cancelled its task meanwhile)
            self.idle.set_result(None)

    def send(self, value: Any) -> Any:
        coro = self.coro
        if coro is None:  # idle: wait as `await self.idle` would
            self.idle._asyncio_future_blocking = True
            return self.idle
        yielded = self.yielded
        if yielded is not _HANDED:
            self.yielded = _HANDED
            return yielded
        assert self.context is not None
        return self.context.run(coro.send, value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        exc = typ if val is None else val
        coro = self.coro
        if coro is None:  # cancelled while idle
            raise exc
        self.yielded = _HANDED  # thrown into the drain where it waits
        assert self.context is not None
        return self.context.run(coro.throw, exc)

    def close(self) -> None:
        if self.coro is not None:
            self.coro.close()

    def __await__(self) -> Generator[Any, None, None]:
        raise TypeError("driven by its task only")


_HANDED: Final[Any] = object()


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
        self._spare: asyncio.Task[None] | None = None  # see _start_now
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
            if len(batch.items) > START_NOW_MAX or not self._start_now(sender.id, queue, loop):
                queue.task = loop.create_task(self._drain(sender.id, queue))

    def _start_now(self, key: str, queue: _Queue, loop: asyncio.AbstractEventLoop) -> bool:
        """Drain `queue` here and now, inside the spare task (see the module docstring);
        False, doing nothing, when a task is running (not the read path).

        The drain runs in a context of its own, as in a task of its own. If a handler
        waits, the spare becomes the drain's task and the next drain gets a new spare;
        a handler that cancelled its task leaves the spare to that cancellation.
        """
        if asyncio.current_task(loop) is not None:
            return False  # (asked first: _enter_task's refusal formats both tasks' reprs)
        spare = self._spare
        if spare is None:
            spare = self._spare = self._new_spare(loop)
        queue.task = spare
        drain = self._drain(key, queue)
        context = contextvars.copy_context()
        _enter_task(loop, spare)  # left in the `finally` below, whatever happens
        try:
            yielded = context.run(drain.send, None)
        except StopIteration:
            if spare.cancelling():
                self._spare = None
            return True
        except asyncio.CancelledError:  # close() came from a handler: nothing left to run
            self._spare = None
            return True
        finally:
            _leave_task(loop, spare)
        self._spare = None
        carrier = spare.get_coro()
        assert isinstance(carrier, _Carrier)
        carrier.take(drain, yielded, context)
        return True

    def _new_spare(self, loop: asyncio.AbstractEventLoop) -> asyncio.Task[None]:
        task = loop.create_task(_Carrier(loop.create_future()))
        task.add_done_callback(self._spare_done)
        return task

    def _spare_done(self, task: asyncio.Task[None]) -> None:
        if self._spare is task:
            self._spare = None

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
                            if spec.message_only:  # `invoke`'s commonest cases, inlined
                                result = await spec.func(owner, message)
                            elif spec.with_agent:
                                result = await spec.func(owner, message, sender)
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
            if not self._pending and self._idle_waiters:
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
        spare, self._spare = self._spare, None
        if spare is not None and spare is not this:
            tasks.append(spare)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self._queues.clear()
        self._pending.clear()
        self._wake_idle()
