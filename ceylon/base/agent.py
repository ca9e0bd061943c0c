"""`BaseAgent`, `Admin` and `Worker`: the API agents are written against."""

from __future__ import annotations

import asyncio
import dataclasses
import ssl as _ssl
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, Final, TypeVar

from loguru import logger

import transport
from transport import PLAIN_TAG, Codec, DecodeError, UnknownTypeError, default_registry
from transport.natsbus import NatsBus, NatsOptions

from ..asking import (
    ASK_REPLY,
    ASK_REQUEST,
    ASK_TAGS,
    DENIED,
    NO_REPLY,
    RAISED,
    UNDECODABLE,
    AskReply,
    AskRequest,
    PendingAsks,
)
from ..asking import (
    NO_HANDLER as NO_ASK_HANDLER,
)
from ..config import Settings, parse_address
from ..dispatch import DEFAULT_MAX_PENDING, AnswerCallback, Dispatcher, Item
from ..drops import NO_HANDLER, UNKNOWN_TAG, WRONG_FIELDS, AgentStats, DropCounter
from ..errors import (
    AgentNotFoundError,
    AskTimeout,
    EncodeError,
    NotConnectedError,
    PermissionDenied,
)
from ..handlers import HandlerSpec, HandlerTable, pattern_matches, validate_handler
from ..link import Link
from ..natslink import NatsLink
from ..peer import AgentDetail, PeerMode
from ..session import Session
from ..system import PlaygroundStatus

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
        #: what the playground gave this agent to prove, reconnecting, that its id is
        #: its own (an impersonator with the id but not this is refused)
        self.resume_secret: str | None = None
        self._table = type(self)._ceylon_table.copy()
        self._by_tag: dict[str, tuple[HandlerSpec, ...]] = {}  # see _handlers_for
        self._by_tag_version = -1
        self._link: Link | None = None
        self._codec = Codec()
        self._drops = DropCounter()
        self._sent = 0
        self._received = 0
        self._dispatcher: Dispatcher | None = None
        self._run_tasks: dict[asyncio.Task[Any], HandlerSpec] = {}
        #: run loops the link's loss cut short: they start again when it is back
        self._interrupted: list[HandlerSpec] = []
        self._asks = PendingAsks()
        self._replying: set[asyncio.Task[None]] = set()
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

    def _handlers_for(self, tag: str) -> tuple[HandlerSpec, ...]:
        """The handlers for a received message, found by its tag before it is built."""
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

    def receive_messages(
        self,
        sender: AgentDetail,
        messages: list[tuple[str, bytes]],
        *,
        direct: bool,
        origin: str,
    ) -> None:
        """Hand messages received from `sender` to their handlers, in order.

        The one way in for the agent's links (session or playground): `messages` are
        ``(tag, body)`` pairs with the bodies still encoded. Only messages somebody here
        handles are built, each when its turn comes (see `ceylon.dispatch`); a direct
        message nobody handles, or one that cannot be built, is dropped and counted (see
        `stats()`); a broadcast nobody handles is ignored. The tag is looked up once per
        run of equal tags: a frame's messages usually share one.

        Args:
            direct: the messages were sent to this agent rather than broadcast.
            origin: the connection they came in on (for backpressure).
        """
        self._received += len(messages)
        dispatcher = self._dispatcher
        now = int(time.time() * 1000)
        run_tag: str | None = None  # the tag of the run being gathered, in `bodies`
        run_specs: tuple[HandlerSpec, ...] = ()
        bodies: list[bytes] = []
        for tag, body in messages:
            if tag == run_tag:
                bodies.append(body)
                continue
            if bodies:
                if dispatcher is not None:
                    assert run_tag is not None
                    dispatcher.submit_encoded(
                        run_specs, run_tag, bodies, sender, now, origin, direct
                    )
                bodies = []
            specs = self._handlers_for(tag)
            if specs:  # built by the dispatcher when its turn comes
                run_tag, run_specs = tag, specs
                bodies.append(body)
                continue
            run_tag = None
            if tag == PLAIN_TAG:  # a plain value (str, dict...): its type is its own
                self._receive_plain(body, sender, direct, origin, now)
            elif tag in ASK_TAGS:  # the runtime's own: off the common path
                self._receive_ask(tag, body, sender, direct, origin)
            elif direct:
                self._unhandled(tag, body, sender)
        if bodies and dispatcher is not None:
            assert run_tag is not None
            dispatcher.submit_encoded(run_specs, run_tag, bodies, sender, now, origin, direct)

    def _build_failed(
        self, tag: str, body: bytes, exc: Exception, sender: AgentDetail, direct: bool
    ) -> None:
        """Count and report a received message that could not be built."""
        if isinstance(exc, UnknownTypeError):
            reason, detail = UNKNOWN_TAG, f"nested type {exc.tag} is unknown here"
        elif isinstance(exc, DecodeError):
            reason, detail = WRONG_FIELDS, exc.reason
        else:  # not a decoding error: a bug on this side, but it costs one message only
            reason, detail = WRONG_FIELDS, f"{type(exc).__name__} while building it"
        self._dropped(tag, reason, sender, detail)
        if direct:
            self._tell_dropped(tag, reason, detail, body, sender)

    def _submit_items(
        self,
        items: list[Item],
        sender: AgentDetail,
        origin: str,
        answer: AnswerCallback | None = None,
    ) -> None:
        if self._dispatcher is not None:
            now = int(time.time() * 1000)
            self._dispatcher.submit_batch(items, sender, now, origin, answer)

    # -- request/reply ---------------------------------------------------------------

    def _receive_ask(
        self, tag: str, body: bytes, sender: AgentDetail, direct: bool, origin: str
    ) -> None:
        if not direct:
            return  # asks and replies are never broadcast
        try:
            wrapper = self._codec.decode(tag, body)
        except DecodeError as exc:
            self._dropped(tag, WRONG_FIELDS, sender, exc.reason)
            return
        if tag == ASK_REPLY:
            if not self._asks.answered(sender.id, wrapper):
                self._log.debug("ignored a late reply from {}", sender.name or sender.id)
            return
        assert tag == ASK_REQUEST
        request: AskRequest = wrapper
        refusal = self._refusal(sender, request.tag)
        if refusal is not None:
            self._reply(sender, AskReply(request.request, failure=DENIED, error=refusal))
            return
        specs = self._handlers_for(request.tag)
        if not specs:
            kind = "no handler for it" if request.tag in default_registry else "type unknown"
            self._reply(sender, AskReply(request.request, failure=NO_ASK_HANDLER, error=kind))
            return
        try:
            message = self._codec.decode(request.tag, request.body)
        except UnknownTypeError as exc:
            error = f"cannot decode it here: type {exc.tag} is not registered in that process"
            failed = AskReply(request.request, failure=UNDECODABLE, error=error)
            self._reply(sender, failed)
            return
        except DecodeError as exc:
            error = f"cannot decode it here: {exc.reason}"
            failed = AskReply(request.request, failure=UNDECODABLE, error=error)
            self._reply(sender, failed)
            return

        def answer(result: Any, error: BaseException | None) -> None:
            self._answer_ask(sender, request.request, result, error)

        self._submit_items([(specs, message)], sender, origin, answer)

    def _refusal(self, sender: AgentDetail, tag: str) -> str | None:
        """Why `sender` may not have a `tag` message handled here, or None (a playground
        under a permissions file refuses some, and logs it)."""
        return None

    def _answer_ask(
        self, asker: AgentDetail, number: int, result: Any, error: BaseException | None
    ) -> None:
        if error is not None:
            reply = AskReply(number, failure=RAISED, error_type=type(error).__name__)
            reply.error = str(error)[:500]
        elif result is None:
            reply = AskReply(number, failure=NO_REPLY, error="the handler returned None")
        else:
            try:
                tag, body = self._codec.encode(result)
            except Exception as exc:  # EncodeError, or a type that cannot be registered
                text = f"the reply could not be encoded: {exc}"[:500]
                reply = AskReply(number, failure=RAISED, error_type=type(exc).__name__)
                reply.error = text
            else:
                reply = AskReply(number, tag, body)
        self._reply(asker, reply)

    def _reply(self, asker: AgentDetail, reply: AskReply) -> None:
        link = self._link
        if link is None:
            return
        try:
            if link.send_nowait(asker.id, reply) is not None:
                return
        except Exception as exc:  # gone, or the reply is over the frame size
            self._log.warning("could not reply to {}: {}", asker.name or asker.id, exc)
            return
        task = asyncio.get_running_loop().create_task(self._send_reply(link, asker, reply))
        self._replying.add(task)
        task.add_done_callback(self._replying.discard)

    async def _send_reply(self, link: Link, asker: AgentDetail, reply: AskReply) -> None:
        try:
            await link.send(asker.id, reply)
        except Exception as exc:
            self._log.warning("could not reply to {}: {}", asker.name or asker.id, exc)

    async def ask(self, target: str, message: Any, timeout: float = 10.0) -> Any:
        """Send `message` to one agent and return what its handler for it returns.

        The target's ``@on(type(message))`` handler's return value is the reply, encoded
        and decoded like any message (its type must be registered here: a type named in
        one of this agent's ``@on`` handlers is, `register()` does it for others). The
        ask travels as a direct message, in order with this agent's other messages to
        the target. Cancelling the call drops the reply when it comes.

        Args:
            target: the agent's id or name (the playground's included).
            timeout: seconds to wait for the reply.

        Raises:
            AskTimeout: no reply within `timeout`.
            AgentNotFoundError: no connected agent has that id or name.
            AgentLeftError: the target left before it answered.
            RemoteHandlerError: the target's handler raised (its type and message are
                given, nothing else), returned None, or it has no handler for the
                message (or could not decode it).
            NotConnectedError: the agent has no playground, or lost it meanwhile.
            EncodeError: the message cannot be encoded.
            DecodeError: the reply cannot be decoded here (its type is not registered).
        """
        link = self._require_link()
        try:
            tag, body = self._codec.encode(message)
        except transport.EncodeError as exc:
            raise _encode_error(exc) from None
        try:
            async with asyncio.timeout(timeout):
                detail = await link.resolve(target)
                if detail.id == self.id:
                    raise ValueError("an agent cannot ask itself")
                number, future = self._asks.open(detail.id, target, type(message).__name__)
                try:
                    await link.send(detail.id, AskRequest(number, tag, body))
                    self._sent += 1
                    reply_tag, reply_body = await future
                finally:
                    self._asks.close(number)
        except TimeoutError:
            raise AskTimeout(target, timeout) from None
        return self._codec.decode(reply_tag, reply_body)

    def receive_undeliverable(self, target: str, tag: str, reason: str) -> None:
        """A message to `target` went nowhere (called by the link): asks to it fail now."""
        self._log.warning("message {} to {} was not delivered: {}", tag, target, reason)
        if tag == ASK_REQUEST:
            denied = reason.startswith("not permitted")
            self._asks.undeliverable(
                target, PermissionDenied(reason) if denied else AgentNotFoundError(target)
            )

    def receive_link_lost(self, reason: str) -> None:
        """The link to the playground is gone (called by the link): every open ask fails
        and the run loops are cancelled (`receive_link_restored` starts them again)."""
        self._asks.fail_all(NotConnectedError(f"connection lost: {reason}"))
        this = asyncio.current_task()  # a run loop that stops its agent finishes stop()
        for task, spec in list(self._run_tasks.items()):
            if task is not this:
                task.cancel()
                del self._run_tasks[task]
                self._interrupted.append(spec)

    def receive_link_restored(self) -> None:
        """The link reconnected and registered anew (called by the link): the run loops
        start again, from the top."""
        self._start_run_loops()

    def receive_lost(self, detail: AgentDetail | None) -> None:
        """Messages to and from `detail` (None: everyone) may have been lost on NATS
        (called by the link); asks in flight time out as usual. A playground tells its
        plugins (`Plugin.messages_lost`)."""

    def _receive_plain(
        self, body: bytes, sender: AgentDetail, direct: bool, origin: str, now: int
    ) -> None:
        try:
            value = self._codec.decode(PLAIN_TAG, body)
        except DecodeError as exc:
            self._dropped("plain value", WRONG_FIELDS, sender, exc.reason)
            return
        specs = self._table.for_message(type(value))
        if specs:
            if self._dispatcher is not None:
                self._dispatcher.submit_batch([(specs, value)], sender, now, origin)
        elif direct:
            self._dropped(type(value).__name__, NO_HANDLER, sender, "")

    def _unhandled(self, tag: str, body: bytes, sender: AgentDetail) -> None:
        if tag in default_registry:
            self._dropped(tag, NO_HANDLER, sender, "")
            self._tell_dropped(tag, NO_HANDLER, "no handler for it here", body, sender)
        else:
            detail = "the type is not registered here"
            self._dropped(tag, UNKNOWN_TAG, sender, detail)
            self._tell_dropped(tag, UNKNOWN_TAG, detail, body, sender)

    def _tell_dropped(
        self, tag: str, reason: str, detail: str, body: bytes, sender: AgentDetail
    ) -> None:
        if type(self).message_dropped is BaseAgent.message_dropped:
            return  # nobody listens: the fields are not worth decoding
        try:
            self.message_dropped(tag, reason, detail, self._codec.peek(body), sender)
        except Exception:
            self._log.exception("message_dropped raised; the agent goes on")

    def message_dropped(
        self,
        type_name: str,
        reason: str,
        detail: str,
        fields: dict[str, Any] | None,
        sender: AgentDetail,
    ) -> None:
        """Called for each direct message dropped here (it is counted in `stats()` too);
        override it to tell the sender, say. Does nothing by default.

        Args:
            type_name: the message's tag (its type's name, unless registered otherwise).
            reason: "unknown tag", "wrong fields" or "no handler".
            detail: what went wrong, in words.
            fields: the message's top-level fields as plain values (nested dataclasses
                and enums are None), or None if it has none.
        """

    def _dropped(self, type_name: str, reason: str, sender: AgentDetail, detail: str) -> None:
        self._log.warning(
            "dropped a {} message from {}: {}{}",
            type_name,
            sender.name or sender.id,
            reason,
            f" ({detail})" if detail else "",
        )
        self._drops.record(type_name, reason, detail)

    def stats(self) -> AgentStats:
        """What this agent sent, received and dropped (by reason) since it was made."""
        dropped = dict(self._drops.counts)
        upstream = 0
        if self._link is not None:
            for reason, count in self._link.dropped_upstream().items():
                if reason == "upstream":
                    upstream = count
                else:
                    dropped[reason] = dropped.get(reason, 0) + count
        return AgentStats(self._sent, self._received, dropped, upstream)

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

    def receive_membership(self, detail: AgentDetail, topic: str, *, joined: bool) -> None:
        """Run the on_connect (or, when not `joined`, on_disconnect) handlers matching
        `detail` (called by the agent's link as agents come and go)."""
        if not joined:
            self._asks.left(detail.id)
        self._membership(self._table.connect if joined else self._table.disconnect, detail, topic)

    def _membership(self, specs: list[HandlerSpec], detail: AgentDetail, topic: str) -> None:
        matching = tuple(s for s in specs if pattern_matches(s.pattern, topic, detail.role))
        if matching:
            self._submit(matching, topic, detail, int(time.time() * 1000), "")

    # -- the API ---------------------------------------------------------------------

    @property
    def connected_playground(self) -> AgentDetail | None:
        """The playground a client agent is connected to (None when it is not)."""
        return self._link.playground if self._link is not None else None

    def details(self) -> AgentDetail:
        """This agent's own `AgentDetail`."""
        return AgentDetail(self.id, self.name, self.role, self._address(), dict(self.extra_data))

    def _address(self) -> str:
        return ""

    def _require_link(self) -> Link:
        if self._link is None:
            raise self._not_connected()
        return self._link

    def _not_connected(self) -> NotConnectedError:
        return NotConnectedError(f"agent {self.name!r} is not connected to a playground")

    async def broadcast_message(self, message: Any) -> None:
        """Send `message` to every other agent of the workspace, the playground included.

        Raises:
            NotConnectedError: the agent has no playground.
            EncodeError: the message cannot be encoded.
        """
        link = self._link  # `_require_link()`, one call less: this is every message
        if link is None:
            raise self._not_connected()
        try:
            link.broadcast_nowait(message)
        except transport.EncodeError as exc:
            raise _encode_error(exc) from None
        self._sent += 1
        if link.congested:
            await link.drain()

    async def send_message(self, target: str, message: Any) -> None:
        """Send `message` to one agent, by id or name.

        Raises:
            AgentNotFoundError: no connected agent has that id or name.
            NotConnectedError: the agent has no playground.
            EncodeError: the message cannot be encoded.
        """
        link = self._link  # `_require_link()`, one call less: this is every message
        if link is None:
            raise self._not_connected()
        send = link.senders.get(target)
        try:
            if send is not None:  # sent to before: straight onto its route
                if send(message):
                    await link.drain()
            else:
                congested = link.send_nowait(target, message)
                if congested:
                    await link.drain()
                elif congested is None:  # not known here: asks the playground who it is
                    await link.send(target, message)
        except transport.EncodeError as exc:
            raise _encode_error(exc) from None
        except transport.ConnectionClosed:  # a sender's connection went first
            raise self._not_connected() from None
        self._sent += 1

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

    def _start_dispatch(self) -> None:
        if self._dispatcher is None:
            self._dispatcher = Dispatcher(
                self,
                on_pressure=self._on_pressure,
                max_pending=self.max_pending,
                build=self._codec.builders,
                on_build_failed=self._build_failed,
            )

    def _on_pressure(self, origin: str, paused: bool) -> None:
        if self._link is not None:
            self._link.hold(origin, paused)

    def _start_run_loops(self, specs: list[HandlerSpec] | None = None) -> None:
        """Start the run loops (`specs`, or all of them once)."""
        if specs is None:
            if self._run_tasks:
                return
            specs = list(self._table.run)
        loop = asyncio.get_running_loop()
        for spec in specs:
            args: tuple[Any, ...] = () if spec.bound else (self,)
            if spec.wants_inputs:
                args += (b"",)
            task = loop.create_task(self._run_loop(spec, args))
            self._run_tasks[task] = spec
            task.add_done_callback(self._run_ended)

    def _run_ended(self, task: asyncio.Task[Any]) -> None:
        self._run_tasks.pop(task, None)

    async def _run_loop(self, spec: HandlerSpec, args: tuple[Any, ...]) -> None:
        try:
            await spec.func(*args)
        except asyncio.CancelledError:
            raise
        except NotConnectedError:
            # The link went before it said so: this loop starts again when it is back.
            self._log.info("run loop {} stopped: not connected", spec.name)
            self._interrupted.append(spec)
        except Exception:
            self._log.exception("run loop {} raised", spec.name)

    async def _stop_running(self) -> None:
        this = asyncio.current_task()  # stop() may come from a run loop or a handler
        tasks = [task for task in self._run_tasks if task is not this]
        self._run_tasks.clear()
        self._interrupted.clear()
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
        address: str | tuple[str, int] | None = None,
        *,
        workspace: str = "default",
        token: str | None = None,
        ssl: _ssl.SSLContext | None = None,
        reconnect: bool = False,
        settings: Settings | None = None,
        nats: str | Sequence[str] | NatsOptions | None = None,
    ) -> None:
        """Join the playground at `address` ("host:port"), or the workspace on NATS, and
        start this agent.

        Args:
            reconnect: when the playground goes away, connect again (capped exponential
                backoff) and register anew (on NATS the connection always reconnects).
            settings: every connection setting at once (overrides the other arguments).
            nats: NATS server URLs (``"nats://a:4222,nats://b:4222"``), or `NatsOptions`
                for credentials and TLS: join the workspace over NATS instead of TCP.

        Raises:
            HandshakeError: the playground refused the agent (wrong token, workspace,
                name already taken...).
            OSError, TimeoutError: the playground (or NATS) could not be reached in time.
            ConnectionClosed: the link dropped before the playground sent the directory.
            NotConnectedError: on NATS, no playground answered in time.
        """
        if self.mode is not PeerMode.CLIENT:
            raise RuntimeError(f"{self!r} is an admin: it listens, it does not connect")
        if self._link is not None and self._link.playground is not None:
            raise RuntimeError(f"{self!r} is already connected")
        settings = settings or Settings(
            workspace=workspace, token=token, ssl=ssl, reconnect=reconnect
        )
        if nats is not None:
            options = nats if isinstance(nats, NatsOptions) else NatsOptions.parse(nats)
            settings = dataclasses.replace(settings, nats=options)
        link: Link
        if settings.nats is not None:
            bus = await NatsBus.open(settings.nats, settings.workspace, self.id)
            link = NatsLink(self, bus, settings)
        else:
            if address is None:
                raise ValueError("give the playground's address (HOST:PORT) or nats=URLS")
            host, port = parse_address(address)
            link = Session(self, host, port, settings)
        self._start_dispatch()
        self._link = link
        try:
            await link.start()
        except BaseException:
            self._link = None
            await self._stop_running()
            raise
        self._start_run_loops()

    async def stop(self) -> None:
        """Leave the playground (saying goodbye) and stop handlers and run loops."""
        if self._link is not None:
            await self._link.stop()
        await self._stop_running()

    async def wait_stopped(self) -> None:
        """Wait until this client agent's link has ended for good."""
        if self._link is not None:
            await self._link.wait_stopped()

    async def wait_idle(self) -> None:
        """Wait until every message received so far has been handled."""
        if self._dispatcher is not None:
            await self._dispatcher.wait_idle()


def _encode_error(exc: transport.EncodeError) -> EncodeError:
    return exc if isinstance(exc, EncodeError) else EncodeError(str(exc))


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
