"""`BaseAgent`, `Admin` and `Worker`: the API agents are written against."""

from __future__ import annotations

import asyncio
import ssl as _ssl
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Final, TypeVar

from loguru import logger

from transport import PLAIN_TAG, DecodeError, MessageGroup, default_registry
from transport.codec import find_unresolved

from ..config import Settings, parse_address
from ..dispatch import DEFAULT_MAX_PENDING, Dispatcher, Item
from ..errors import NotConnectedError
from ..handlers import HandlerSpec, HandlerTable, pattern_matches, validate_handler
from ..link import Link
from ..peer import AgentDetail, PeerMode
from ..session import Session
from ..system import SYSTEM_PREFIX, PlaygroundStatus

__all__ = ["Admin", "BaseAgent", "Worker", "register"]

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
T = TypeVar("T", bound=type)
#: Seconds `stop()` lets queued handlers finish before cancelling them.
STOP_GRACE: Final = 1.0


def register(cls: T | None = None, *, tag: str | None = None) -> Any:
    """Register a message type so this process can decode it.

    Types named in ``@on(...)`` and types an agent sends are registered already; call
    this for others (e.g. a type nested in an ``Any`` field). Usable as ``register(T)``,
    ``register(T, tag="x")``, ``@register`` or ``@register(tag="x")``.

    Raises:
        TagConflictError: another type already holds the tag.
    """

    def apply(klass: T) -> T:
        default_registry.register(klass, tag)
        return klass

    return apply if cls is None else apply(cls)


class BaseAgent:
    """An agent: a named peer with handlers.

    Args:
        name: unique within the workspace.
        mode: `PeerMode.CLIENT` connects to a playground; `PeerMode.ADMIN` is one.
        role: what the agent does, matched by ``on_connect("topic:role")`` and by tasks'
            ``required_role``.
        extra_data: free-form details other agents see in `AgentDetail.extra_data`.
    """

    _ceylon_table: ClassVar[HandlerTable] = HandlerTable()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._ceylon_table = HandlerTable.for_class(cls)
        for message_type in cls._ceylon_table.message_types():
            _register_quietly(message_type)

    def __init__(
        self,
        name: str,
        mode: PeerMode = PeerMode.CLIENT,
        role: str = "",
        extra_data: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(name, str) or not name:
            raise ValueError(f"an agent needs a non-empty name, got {name!r}")
        self.name = name
        self.mode = mode
        self.role = role
        self.extra_data: dict[str, Any] = dict(extra_data or {})
        self.id = uuid.uuid4().hex
        self._table = type(self)._ceylon_table.copy()
        self._by_tag: dict[str, tuple[HandlerSpec, ...]] = {}  # see _handlers_for
        self._by_tag_version = -1
        self._link: Link | None = None
        self._dispatcher: Dispatcher | None = None
        self._run_tasks: set[asyncio.Task[Any]] = set()
        self.max_pending = DEFAULT_MAX_PENDING
        self._log = logger.bind(agent=name)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} role={self.role!r}>"

    # -- handlers --------------------------------------------------------------------

    def on(self, *types: type) -> Callable[[F], F]:
        """Register a handler on this instance: ``@agent.on(T) async def h(msg, ...)``.

        Raises:
            HandlerSignatureError: the function cannot take (message[, time][, agent]).
        """
        if not types or not all(isinstance(t, type) for t in types):
            raise TypeError("on() takes one or more message types")

        def decorate(func: F) -> F:
            for t in types:
                self._table.add(validate_handler(func, "message", bound=True, message_type=t))
                _register_quietly(t)
            self._by_tag.clear()
            return func

        return decorate

    #: An observer (``ceylon status``) may only ask the playground questions: it is not in
    #: the directory, nobody hears of it joining, and messages to or from it go nowhere.
    observer: ClassVar[bool] = False

    @property
    def wants_membership(self) -> bool:
        """Whether this agent hears of every join and leave (it has handlers for them)."""
        return bool(self._table.connect or self._table.disconnect)

    def _handlers_for(self, tag: str, body: Any) -> tuple[HandlerSpec, ...]:
        """The handlers for a received message, found by its tag before it is built."""
        if tag == PLAIN_TAG:  # a plain value (str, dict, list...) is its own message
            return self._table.for_message(type(body))
        cache = self._by_tag
        if self._by_tag_version != default_registry.version:
            cache.clear()
            self._by_tag_version = default_registry.version
        found = cache.get(tag)
        if found is None:
            spec = default_registry.resolve(tag)
            found = self._table.for_message(spec.cls) if spec is not None else ()
            if len(cache) >= 10_000:  # tags come from peers: keep the cache bounded
                cache.clear()
            cache[tag] = found
        return found

    def _read_group(
        self,
        group: MessageGroup,
        build: Callable[[str, Any], Any],
        on_system: Callable[[str, Any], None],
        *,
        direct: bool,
        sender: str,
    ) -> list[Item]:
        """The handler work in one received group: ``(handlers, message)`` per message.

        Runtime messages go to `on_system`; messages nobody here handles are skipped (a
        warning for a direct one); undecodable ones are dropped with a warning. The tag
        is looked up once per run of equal tags: a frame's messages usually share one.
        """
        items: list[Item] = []
        last_tag: str | None = None
        specs: tuple[HandlerSpec, ...] = ()
        unresolved = group.unresolved is not None
        for tag, body in group.pairs():
            if tag != last_tag or tag == PLAIN_TAG:  # a plain value's type is its own
                if tag.startswith(SYSTEM_PREFIX):
                    on_system(tag, body)
                    last_tag = None
                    continue
                last_tag, specs = tag, self._handlers_for(tag, body)
            if not specs:
                if direct:
                    self._log.warning("no handler for direct message {} from {}", tag, sender)
                continue
            if unresolved:
                missing = find_unresolved(body)
                if missing is not None:
                    self._log.warning("dropped {} from {}: nested type {} is unknown here",
                                      tag, sender, missing)  # fmt: skip
                    continue
            try:
                items.append((specs, build(tag, body)))
            except DecodeError as exc:
                self._log.warning("dropped a message from {}: {}", sender, exc)
        return items

    def _submit(
        self,
        specs: tuple[HandlerSpec, ...],
        message: Any,
        sender: AgentDetail,
        now: int,
        origin: str,
    ) -> None:
        if self._dispatcher is not None:
            self._dispatcher.submit(specs, message, sender, now, origin)

    def _submit_batch(self, items: list[Item], sender: AgentDetail, now: int, origin: str) -> None:
        if self._dispatcher is not None:
            self._dispatcher.submit_batch(items, sender, now, origin)

    def _agent_joined(self, detail: AgentDetail, topic: str) -> None:
        self._membership(self._table.connect, detail, topic)

    def _agent_left(self, detail: AgentDetail, topic: str) -> None:
        self._membership(self._table.disconnect, detail, topic)

    def _membership(self, specs: list[HandlerSpec], detail: AgentDetail, topic: str) -> None:
        matching = tuple(s for s in specs if pattern_matches(s.pattern, topic, detail.role))
        if matching:
            self._submit(matching, topic, detail, int(time.time() * 1000), "")

    # -- the API ---------------------------------------------------------------------

    @property
    def connected_playground(self) -> AgentDetail | None:
        """The playground a client agent is connected to (None when it is not)."""
        session = self._link
        return session.playground if isinstance(session, Session) else None

    def details(self) -> AgentDetail:
        """This agent's own `AgentDetail`."""
        return AgentDetail(self.id, self.name, self.role, self._address(), dict(self.extra_data))

    def _address(self) -> str:
        return ""

    def _require_link(self) -> Link:
        if self._link is None:
            raise NotConnectedError(f"agent {self.name!r} is not connected to a playground")
        return self._link

    async def broadcast_message(self, message: Any) -> None:
        """Send `message` to every other agent of the workspace, the playground included.

        Raises:
            NotConnectedError: the agent has no playground.
            EncodeError: the message cannot be encoded.
        """
        link = self._require_link()
        link.broadcast_nowait(message)
        if link.congested:
            await link.drain()

    async def send_message(self, target: str, message: Any) -> None:
        """Send `message` to one agent, by id or name.

        Raises:
            AgentNotFoundError: no connected agent has that id or name.
            NotConnectedError: the agent has no playground.
            EncodeError: the message cannot be encoded.
        """
        link = self._require_link()
        if not link.send_nowait(target, message):
            await link.send(target, message)
        elif link.congested:
            await link.drain()

    async def get_connected_agents(self) -> list[AgentDetail]:
        """The other agents connected now (the playground included, for a client)."""
        return await self._require_link().agents()

    async def playground_status(self, timeout: float = 10.0) -> PlaygroundStatus:
        """What the playground reports of itself (what ``ceylon status`` shows).

        Args:
            timeout: seconds to wait for the answer.

        Raises:
            NotConnectedError: a client agent that is not connected.
            TimeoutError: the playground did not answer in time.
        """
        return await self._require_link().status(timeout)

    # -- running ---------------------------------------------------------------------

    def _start_dispatch(self, on_pressure: Callable[[str, bool], None] | None) -> None:
        if self._dispatcher is None:
            self._dispatcher = Dispatcher(
                self, on_pressure=on_pressure, max_pending=self.max_pending
            )

    def _start_run_loops(self) -> None:
        if self._run_tasks:
            return
        loop = asyncio.get_running_loop()
        for spec in self._table.run:
            args: tuple[Any, ...] = () if spec.bound else (self,)
            if spec.wants_inputs:
                args += (b"",)
            task = loop.create_task(self._run_loop(spec, args))
            self._run_tasks.add(task)

    async def _run_loop(self, spec: HandlerSpec, args: tuple[Any, ...]) -> None:
        try:
            await spec.func(*args)
        except asyncio.CancelledError:
            raise
        except NotConnectedError:
            self._log.info("run loop {} ended: not connected", spec.name)
        except Exception:
            self._log.exception("run loop {} raised", spec.name)

    async def _stop_running(self) -> None:
        this = asyncio.current_task()  # stop() may come from a run loop or a handler
        tasks = [task for task in self._run_tasks if task is not this]
        self._run_tasks.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        dispatcher = self._dispatcher
        if dispatcher is None:
            return
        if not dispatcher.running_handler():  # a handler cannot wait for itself
            try:  # what is queued (on_disconnect handlers among it) gets a moment to finish
                async with asyncio.timeout(STOP_GRACE):
                    await dispatcher.wait_idle()
            except TimeoutError:
                self._log.warning("handlers still busy {} s after stop(); cancelling", STOP_GRACE)
        self._dispatcher = None
        await dispatcher.close()

    # -- client mode -----------------------------------------------------------------

    async def connect(
        self,
        address: str | tuple[str, int],
        *,
        workspace: str = "default",
        token: str | None = None,
        ssl: _ssl.SSLContext | None = None,
        reconnect: bool = False,
        settings: Settings | None = None,
    ) -> None:
        """Join the playground at `address` ("host:port") and start this agent.

        Args:
            reconnect: when the playground goes away, connect again (capped exponential
                backoff) and register anew.
            settings: every connection setting at once (overrides the other arguments).

        Raises:
            HandshakeError: the playground refused the agent (wrong token, workspace,
                name already taken...).
            OSError, TimeoutError: the playground could not be reached in time.
            ConnectionClosed: the link dropped before the playground sent the directory.
        """
        if self.mode is not PeerMode.CLIENT:
            raise RuntimeError(f"{self!r} is an admin: it listens, it does not connect")
        if isinstance(self._link, Session) and self._link.connected:
            raise RuntimeError(f"{self!r} is already connected")
        host, port = parse_address(address)
        settings = settings or Settings(
            workspace=workspace, token=token, ssl=ssl, reconnect=reconnect
        )
        session = Session(self, host, port, settings)
        self._start_dispatch(self._on_pressure)
        self._link = session
        try:
            await session.start()
        except BaseException:
            self._link = None
            await self._stop_running()
            raise
        self._start_run_loops()

    def _on_pressure(self, origin: str, paused: bool) -> None:
        session = self._link
        if isinstance(session, Session) and session._conn is not None:
            if paused:
                session._conn.pause_reading()
            else:
                session._conn.resume_reading()

    async def stop(self) -> None:
        """Leave the playground (saying goodbye) and stop handlers and run loops."""
        session = self._link
        if isinstance(session, Session):
            await session.stop()
        await self._stop_running()

    async def wait_stopped(self) -> None:
        """Wait until this client agent's link has ended for good."""
        session = self._link
        if isinstance(session, Session):
            await session.wait_stopped()

    async def wait_idle(self) -> None:
        """Wait until every message received so far has been handled."""
        if self._dispatcher is not None:
            await self._dispatcher.wait_idle()


def _register_quietly(message_type: type) -> None:
    """Register a handler's message type; types that are not dataclasses/enums are skipped."""
    try:
        default_registry.register(message_type)
    except TypeError:
        pass


class Admin(BaseAgent):
    """An agent in `PeerMode.ADMIN`: the playground role (see `BasePlayGround`)."""

    def __init__(self, name: str, role: str = "admin", **kwargs: Any) -> None:
        kwargs.pop("mode", None)
        super().__init__(name, PeerMode.ADMIN, role, **kwargs)


class Worker(BaseAgent):
    """An agent in `PeerMode.CLIENT`: it connects to a playground."""

    def __init__(self, name: str, role: str = "worker", **kwargs: Any) -> None:
        kwargs.pop("mode", None)
        super().__init__(name, PeerMode.CLIENT, role, **kwargs)
