"""A workspace's messages over NATS, with the same payloads as the TCP wire.

The agents of one process that reach the same servers the same way share one NATS
connection (nats-py), as NATS advises: a broadcast reaches a process once, however many
of its agents hear it, and is decoded once for all of them. What an agent sends travels
on subjects of its workspace ``W``, the sender's id always last, so that a NATS account
can be given the right to publish under its own id only::

    ceylon.W.b.<sender>            broadcast
    ceylon.W.d.<target>.<sender>   direct message
    ceylon.W.p.<sender>            presence (the runtime's own records)

and it hears ``ceylon.W.b.*``, ``ceylon.W.d.<own id>.*`` and ``ceylon.W.p.*`` (never its
own messages: those its connection brings back are not handed to it). A NATS message carries a
kind-0 payload of the TCP wire, ``[0, sender, target, tag1, body1, ...]``: messages
queued to one subject in one event-loop turn go out as one NATS message. The sender and
target a receiver sees are those of the subject; a payload that says otherwise is
dropped.

Order: NATS keeps the order of one connection's messages to another; nats-py hands each
subscription its own queue, which would let a broadcast overtake a direct message sent
before it. A shared connection gives all its subscriptions one queue and reads it in one
task, in the order the server sent (messages between two agents of one process go
through the server too, and keep their order the same way).
"""

from __future__ import annotations

import asyncio
import collections
import re
import ssl as _ssl
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Final

from loguru import logger

from .codec import Codec
from .errors import DecodeError, EncodeError, InvalidStateError
from .limits import DEFAULT_LIMITS, DecodeLimits
from .wire import ROUTE_ROOM, MessageGroup, bin_header, messages_prefix, parse_group_prefix

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg

__all__ = [
    "BROADCAST",
    "DIRECT",
    "PRESENCE",
    "BusCallback",
    "NatsBus",
    "NatsOptions",
    "check_token",
]

#: what a received message was sent as
BROADCAST: Final = "b"
DIRECT: Final = "d"
PRESENCE: Final = "p"

#: Called with (kind, sender, pairs) for each NATS message received, in order.
BusCallback = Callable[[str, str, list[tuple[str, bytes]]], None]

_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,128}")
#: what one NATS message of ours may hold, when the server allows more
MAX_MESSAGE: Final = 1024 * 1024
#: bytes queued (ours and nats-py's) above which a sender is asked to wait
HIGH_WATER: Final = 4 * 1024 * 1024


def check_token(what: str, value: str) -> str:
    """`value` if it can stand in a subject (letters, digits, ``_``, ``-``).

    Raises:
        ValueError: it cannot; the message says which `what` and why.
    """
    if not _TOKEN.fullmatch(value):
        raise ValueError(
            f"{what} {value!r} cannot be used on NATS: use 1-128 letters, digits, '_' or '-'"
        )
    return value


class NatsOptions:
    """How to reach a NATS cluster.

    Args:
        servers: ``nats://host:port`` URLs (one or more of a cluster).
        token, user, password, credentials: NATS authentication (``credentials`` is a
            ``.creds`` file).
        tls: a client TLS context.
        name: the connection's name, as the server shows it.
        connect_timeout: seconds for each attempt to reach a server.
        reconnect_wait, max_reconnect_attempts: nats-py's reconnection (-1: for ever).
    """

    def __init__(
        self,
        servers: Sequence[str],
        *,
        token: str | None = None,
        user: str | None = None,
        password: str | None = None,
        credentials: str | None = None,
        tls: _ssl.SSLContext | None = None,
        name: str | None = None,
        connect_timeout: float = 5.0,
        reconnect_wait: float = 0.5,
        max_reconnect_attempts: int = -1,
    ) -> None:
        if not servers:
            raise ValueError("give at least one NATS server URL")
        self.servers = list(servers)
        self.token = token
        self.user = user
        self.password = password
        self.credentials = credentials
        self.tls = tls
        self.name = name
        self.connect_timeout = connect_timeout
        self.reconnect_wait = reconnect_wait
        self.max_reconnect_attempts = max_reconnect_attempts

    @classmethod
    def parse(cls, urls: str | Sequence[str], **kwargs: Any) -> NatsOptions:
        """Options from ``"nats://a:4222,nats://b:4222"`` (or a list of URLs)."""
        if isinstance(urls, str):
            urls = [u.strip() for u in urls.split(",") if u.strip()]
        return cls(list(urls), **kwargs)

    def key(self) -> tuple[Any, ...]:
        """What makes two agents' connections the same connection."""
        return (tuple(self.servers), self.token, self.user, self.password, self.credentials,
                id(self.tls), self.connect_timeout, self.reconnect_wait,
                self.max_reconnect_attempts)  # fmt: skip

    def connect_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "servers": self.servers,
            "connect_timeout": self.connect_timeout,
            "reconnect_time_wait": self.reconnect_wait,
            "max_reconnect_attempts": self.max_reconnect_attempts,
            "no_echo": False,  # agents of one process hear each other through NATS
        }
        for key, value in (
            ("token", self.token),
            ("user", self.user),
            ("password", self.password),
            ("user_credentials", self.credentials),
            ("tls", self.tls),
            ("name", self.name),
        ):
            if value is not None:
                kwargs[key] = value
        return kwargs


class NatsBus:
    """One agent's NATS connection: sends coalesced groups, hears its subjects in order.

    Made by `open`; `start` subscribes and hands what arrives to the callback.
    """

    def __init__(
        self,
        shared: _Shared,
        workspace: str,
        own_id: str,
        *,
        codec: Codec | None = None,
        limits: DecodeLimits = DEFAULT_LIMITS,
    ) -> None:
        self.shared = shared
        self.client: Client = shared.client
        client = self.client
        self.workspace = check_token("workspace", workspace)
        self.own_id = check_token("agent id", own_id)
        self.codec = codec or Codec()
        self.limits = limits
        self.root = f"ceylon.{workspace}"
        self.max_message = min(MAX_MESSAGE, client.max_payload or MAX_MESSAGE)
        self.drops: collections.Counter[str] = collections.Counter()
        self._callback: BusCallback | None = None
        self._started = False
        # (subject, packed pairs) waiting for the end of this loop turn, and their size
        self._out: list[tuple[str, list[bytes]]] = []
        self._out_bytes = 0
        self._flush_scheduled = False
        self._writer: asyncio.Task[None] | None = None
        self._ready: collections.deque[tuple[str, bytes]] = collections.deque()
        self._idle = asyncio.Event()
        self._idle.set()
        self._log = logger.bind(agent=own_id)
        #: called when the connection came back (messages in between may be lost)
        self.on_reconnected: Callable[[], None] | None = None
        self.closing = False

    @property
    def connected(self) -> bool:
        """False from a disconnection until nats-py has reconnected."""
        return self.shared.connected

    @classmethod
    async def open(
        cls, options: NatsOptions, workspace: str, own_id: str, **kwargs: Any
    ) -> NatsBus:
        """Connect to NATS (every URL of `options` is tried).

        Raises:
            ValueError: the workspace or the id cannot be used in subjects.
            OSError, TimeoutError: no server could be reached.
        """
        check_token("workspace", workspace)
        check_token("agent id", own_id)
        shared = await _Shared.get(options)
        return cls(shared, workspace, own_id, **kwargs)

    # -- subjects -------------------------------------------------------------------

    def broadcast_subject(self, sender: str) -> str:
        return f"{self.root}.b.{sender}"

    def direct_subject(self, target: str, sender: str) -> str:
        return f"{self.root}.d.{target}.{sender}"

    def presence_subject(self, sender: str) -> str:
        return f"{self.root}.p.{sender}"

    # -- receiving ------------------------------------------------------------------

    async def start(self, callback: BusCallback) -> None:
        """Subscribe and hand each message received to `callback`, in order."""
        if self._started:
            raise InvalidStateError("the bus is started already")
        self._started = True
        self._callback = callback
        await self.shared.attach(self)

    def deliver(self, kind: str, sender: str, pairs: list[tuple[str, bytes]]) -> None:
        """What the shared connection heard for this agent."""
        if self._callback is not None and not self.closing:
            try:
                self._callback(kind, sender, pairs)
            except Exception:  # the receiver's bug must not stop the reader
                self._log.exception("handling a NATS message from {} failed", sender)

    # -- sending --------------------------------------------------------------------

    def send_nowait(self, message: Any, *, target: str | None = None) -> None:
        """Queue `message` to `target` (an agent id) or to everyone (None).

        Raises:
            EncodeError: the message cannot be encoded.
        """
        tag, body = self.codec.encode_packed(message)
        own = self.own_id
        subject = (
            self.broadcast_subject(own) if target is None else self.direct_subject(target, own)
        )
        self._queue_pair(subject, tag, body)

    def send_presence_nowait(self, message: Any) -> None:
        """Queue one of the runtime's presence records."""
        tag, body = self.codec.encode_packed(message)
        self._queue_pair(self.presence_subject(self.own_id), tag, body)

    def _queue_pair(self, subject: str, tag: bytes, body: bytes) -> None:
        pair = tag + bin_header(len(body)) + body
        if len(pair) > self.max_message - ROUTE_ROOM:
            raise EncodeError(
                f"a message of {len(pair)} bytes is over what one NATS message may carry "
                f"here ({self.max_message - ROUTE_ROOM} bytes)"
            )
        out = self._out
        if out and out[-1][0] == subject:  # consecutive messages to one subject: one group
            out[-1][1].append(pair)
        else:  # never merged across another subject's: that would change their order
            out.append((subject, [pair]))
        self._out_bytes += len(pair)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    @property
    def pending_bytes(self) -> int:
        """What waits to be written: ours and nats-py's."""
        return self._out_bytes + sum(len(p) for _, p in self._ready) + self.client.pending_data_size

    @property
    def congested(self) -> bool:
        return self.pending_bytes > HIGH_WATER

    def _flush(self) -> None:
        """End of the loop turn: each run of messages to one subject becomes one NATS
        message (or a few, under the size limit), written in order by one task."""
        self._flush_scheduled = False
        out, self._out, self._out_bytes = self._out, [], 0
        own = self.own_id
        limit = self.max_message - ROUTE_ROOM  # the group's prefix fits in that room
        for subject, pairs in out:
            target = subject.split(".")[3] if subject[len(self.root) + 1] == DIRECT else None
            start, size = 0, 0
            for i, pair in enumerate(pairs):
                if size + len(pair) > limit and i > start:
                    self._ready.append((subject, _group(own, target, pairs[start:i])))
                    start, size = i, 0
                size += len(pair)
            self._ready.append((subject, _group(own, target, pairs[start:])))
        if self._writer is None and self._ready:
            self._idle.clear()
            self._writer = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        ready = self._ready
        try:
            while ready:
                subject, payload = ready.popleft()
                try:
                    await self.client.publish(subject, payload)
                except Exception as exc:  # closed, or too big for this server
                    self.drops["not sent"] += 1
                    self._log.warning("could not publish to {}: {}", subject, exc)
        finally:
            self._writer = None
            self._idle.set()

    async def drain(self) -> None:
        """Wait until what was queued is handed to the socket."""
        if self._flush_scheduled:
            self._flush()
        await self._idle.wait()
        if self.client.pending_data_size > HIGH_WATER and self.client.is_connected:
            await self.client.flush()

    async def close(self) -> None:
        """Send what is queued, then leave the connection (closed with its last bus)."""
        self.closing = True
        if self._flush_scheduled:
            self._flush()
        await self._idle.wait()
        await self.shared.detach(self)


class _Shared:
    """One NATS connection and its one reader, for the buses of this process (and this
    event loop) that reach the same servers the same way."""

    _open: ClassVar[dict[tuple[Any, ...], asyncio.Future[_Shared]]] = {}

    def __init__(self, client: Client, key: tuple[Any, ...]) -> None:
        self.client = client
        self.key = key
        self.connected = True
        self.buses: dict[str, NatsBus] = {}  # agent id -> its bus
        self._workspaces: dict[str, dict[str, NatsBus]] = {}  # workspace -> its buses
        self._subs: dict[str, Any] = {}  # subject -> subscription
        self._queue: asyncio.Queue[Msg] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._log = logger.bind(agent="nats")

    @classmethod
    async def get(cls, options: NatsOptions) -> _Shared:
        """The connection for `options` in this event loop, made if there is none.

        Raises:
            OSError, TimeoutError: no server could be reached.
        """
        loop = asyncio.get_running_loop()
        key = (id(loop), *options.key())
        future = cls._open.get(key)
        if future is None or (future.done() and future.exception() is not None):
            future = cls._open[key] = loop.create_future()
            try:
                future.set_result(await cls._connect(options, key))
            except BaseException as exc:
                del cls._open[key]
                future.set_exception(exc)
                future.exception()  # retrieved: the caller gets it raised
                raise
        return await asyncio.shield(future)

    @classmethod
    async def _connect(cls, options: NatsOptions, key: tuple[Any, ...]) -> _Shared:
        try:
            import nats
        except ImportError:  # pragma: no cover - the extra is missing
            raise RuntimeError("NATS needs nats-py: pip install 'ceylon-runtime[nats]'") from None
        made: list[_Shared] = []

        async def quiet(exc: Exception) -> None:  # nats-py wants coroutine functions
            logger.bind(agent="nats").debug("nats: {}", exc)

        async def disconnected() -> None:
            if made:
                made[0].lost()

        async def reconnected() -> None:
            if made:
                made[0].back()

        try:
            client = await nats.connect(
                **options.connect_kwargs(),
                error_cb=quiet,
                disconnected_cb=disconnected,
                reconnected_cb=reconnected,
                allow_reconnect=True,
            )
        except nats.errors.NoServersError as exc:
            raise OSError(f"no NATS server reachable at {', '.join(options.servers)}") from exc
        shared = cls(client, key)
        made.append(shared)
        return shared

    def lost(self) -> None:
        self.connected = False
        if any(not bus.closing for bus in self.buses.values()):
            self._log.info("lost the NATS server; reconnecting")

    def back(self) -> None:
        self.connected = True
        for bus in list(self.buses.values()):
            if bus.on_reconnected is not None:
                bus.on_reconnected()

    async def attach(self, bus: NatsBus) -> None:
        if bus.own_id in self.buses:
            raise InvalidStateError(f"agent id {bus.own_id!r} is on this connection already")
        self.buses[bus.own_id] = bus
        workspace = self._workspaces.setdefault(bus.workspace, {})
        workspace[bus.own_id] = bus
        for subject in _subjects(bus, workspace_too=len(workspace) == 1):
            # No callback (so nats-py starts no task per subscription), no pending
            # limits (the reader keeps up, or the server cuts us as a slow consumer).
            sub = await self.client.subscribe(subject, pending_msgs_limit=0, pending_bytes_limit=0)
            if not isinstance(getattr(sub, "_pending_queue", None), asyncio.Queue):
                raise RuntimeError("this version of nats-py is not supported (nats-py>=2.6,<3)")
            if self._queue is None:
                self._queue = sub._pending_queue
                self._reader = asyncio.get_running_loop().create_task(self._read(self._queue))
            sub._pending_queue = self._queue  # one queue: the server's order across subjects
            self._subs[subject] = sub
        await self.client.flush()  # the server has the subscriptions before we go on

    async def detach(self, bus: NatsBus) -> None:
        if self.buses.pop(bus.own_id, None) is None:
            return
        workspace = self._workspaces.get(bus.workspace, {})
        workspace.pop(bus.own_id, None)
        if not workspace:
            self._workspaces.pop(bus.workspace, None)
        for subject in _subjects(bus, workspace_too=not workspace):
            sub = self._subs.pop(subject, None)
            if sub is not None and not self.client.is_closed:
                try:
                    await sub.unsubscribe()
                except Exception as exc:  # closed meanwhile
                    self._log.debug("could not unsubscribe {}: {}", subject, exc)
        if not self.buses:
            await self._close()

    async def _close(self) -> None:
        self._open.pop(self.key, None)
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None
        client = self.client
        if not client.is_closed:
            if client.is_connected:
                try:
                    await client.flush(timeout=2)
                except Exception as exc:  # going away anyway
                    self._log.debug("could not flush before closing: {}", exc)
            await client.close()

    async def _read(self, queue: asyncio.Queue[Msg]) -> None:
        while True:
            msg = await queue.get()
            while True:
                try:
                    self._deliver(msg.subject, msg.data)
                except Exception:  # a bug must not stop the reader of every agent here
                    self._log.exception("a NATS message on {} could not be handled", msg.subject)
                if queue.empty():
                    break
                msg = queue.get_nowait()

    def _deliver(self, subject: str, data: bytes) -> None:
        # ceylon.<workspace>.<kind>.[<target>.]<sender>
        parts = subject.split(".")
        if len(parts) < 4:
            return
        buses = self._workspaces.get(parts[1])
        if not buses:
            return
        kind = parts[2]
        if kind == DIRECT:
            if len(parts) != 5:
                return
            target, sender = parts[3], parts[4]
            bus = buses.get(target)
            receivers = [] if bus is None or sender == target else [bus]
        else:
            if len(parts) != 4:
                return
            target, sender = "", parts[3]
            receivers = [bus for bus_id, bus in buses.items() if bus_id != sender]
        if not receivers:
            return  # our own, back from the server
        try:
            prefix = parse_group_prefix(data)
            if prefix is None:
                raise DecodeError(None, "not a message group")
            count, claimed, _, offset = prefix
            if claimed != sender:
                for bus in receivers:
                    bus.drops["forged sender"] += 1
                return
            limits = receivers[0].limits
            pairs = MessageGroup(sender, target or None, count, data, offset).pairs(limits)
        except DecodeError as exc:
            for bus in receivers:
                bus.drops["malformed"] += 1
            self._log.warning("dropped a malformed NATS message from {}: {}", sender, exc.reason)
            return
        if pairs:
            for bus in receivers:  # decoded once, the same pairs for each
                bus.deliver(kind, sender, pairs)


def _subjects(bus: NatsBus, *, workspace_too: bool) -> list[str]:
    """What `bus` hears: its direct messages, and with `workspace_too` the broadcasts
    and presence of its workspace (one subscription for all its agents here)."""
    subjects = [f"{bus.root}.d.{bus.own_id}.*"]
    if workspace_too:
        subjects += [f"{bus.root}.b.*", f"{bus.root}.p.*"]
    return subjects


def _group(sender: str, target: str | None, pairs: list[bytes]) -> bytes:
    return messages_prefix(sender, target, len(pairs)) + b"".join(pairs)
