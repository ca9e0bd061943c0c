"""A workspace's messages over NATS, with the same payloads as the TCP wire.

Each agent holds one NATS connection (nats-py). What it sends travels on subjects of its
workspace ``W``, the sender's id always last, so that a NATS account can be given the
right to publish under its own id only::

    ceylon.W.b.<sender>            broadcast
    ceylon.W.d.<target>.<sender>   direct message
    ceylon.W.p.<sender>            presence (the runtime's own records)

and it hears ``ceylon.W.b.*``, ``ceylon.W.d.<own id>.*`` and ``ceylon.W.p.*`` (never its
own messages: the connection is opened with ``no_echo``). A NATS message carries a
kind-0 payload of the TCP wire, ``[0, sender, target, tag1, body1, ...]``: messages
queued to one subject in one event-loop turn go out as one NATS message. The sender and
target a receiver sees are those of the subject; a payload that says otherwise is
dropped.

Order: NATS keeps the order of one connection's messages to another; nats-py hands each
subscription its own queue, which would let a broadcast overtake a direct message sent
before it. The bus gives its three subscriptions one queue and reads it in one task, in
the order the server sent.
"""

from __future__ import annotations

import asyncio
import collections
import re
import ssl as _ssl
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

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

    def connect_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "servers": self.servers,
            "connect_timeout": self.connect_timeout,
            "reconnect_time_wait": self.reconnect_wait,
            "max_reconnect_attempts": self.max_reconnect_attempts,
            "no_echo": True,
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
        client: Client,
        workspace: str,
        own_id: str,
        *,
        codec: Codec | None = None,
        limits: DecodeLimits = DEFAULT_LIMITS,
    ) -> None:
        self.client = client
        self.workspace = check_token("workspace", workspace)
        self.own_id = check_token("agent id", own_id)
        self.codec = codec or Codec()
        self.limits = limits
        self.root = f"ceylon.{workspace}"
        self.max_message = min(MAX_MESSAGE, client.max_payload or MAX_MESSAGE)
        self.drops: collections.Counter[str] = collections.Counter()
        self._callback: BusCallback | None = None
        self._queue: asyncio.Queue[Msg] | None = None
        self._reader: asyncio.Task[None] | None = None
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
        #: False from a disconnection until nats-py has reconnected
        self.connected = True

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
        try:
            import nats
        except ImportError:  # pragma: no cover - the extra is missing
            raise RuntimeError("NATS needs nats-py: pip install 'ceylon-runtime[nats]'") from None

        log = logger.bind(agent=own_id)
        made: list[NatsBus] = []

        async def quiet(exc: Exception) -> None:  # nats-py wants coroutine functions
            log.debug("nats: {}", exc)

        async def disconnected() -> None:
            if made:
                made[0].connected = False
            if not (made and made[0].closing):
                log.info("lost the NATS server; reconnecting")

        async def reconnected() -> None:
            if made:
                made[0].connected = True
                if made[0].on_reconnected is not None:
                    made[0].on_reconnected()

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
        bus = cls(client, workspace, own_id, **kwargs)
        made.append(bus)
        return bus

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
        if self._reader is not None:
            raise InvalidStateError("the bus is started already")
        self._callback = callback
        subjects = (
            f"{self.root}.b.*",
            f"{self.root}.d.{self.own_id}.*",
            f"{self.root}.p.*",
        )
        # No callbacks (so nats-py starts no task per subscription) and no pending
        # limits (our reader keeps up, or the server cuts us as a slow consumer).
        subs = [
            await self.client.subscribe(s, pending_msgs_limit=0, pending_bytes_limit=0)
            for s in subjects
        ]
        if not all(isinstance(getattr(sub, "_pending_queue", None), asyncio.Queue) for sub in subs):
            raise RuntimeError("this version of nats-py is not supported (nats-py>=2.6,<3)")
        shared: asyncio.Queue[Msg] = subs[0]._pending_queue
        for sub in subs[1:]:
            sub._pending_queue = shared  # one queue: the server's order across subjects
        self._queue = shared
        await self.client.flush()  # the server has the subscriptions before we go on
        self._reader = asyncio.get_running_loop().create_task(self._read(shared))

    async def _read(self, queue: asyncio.Queue[Msg]) -> None:
        root = len(self.root) + 1
        while True:
            msg = await queue.get()
            while True:
                self._deliver(msg.subject[root:], msg.data)
                if queue.empty():
                    break
                msg = queue.get_nowait()

    def _deliver(self, route: str, data: bytes) -> None:
        kind, _, rest = route.partition(".")
        if kind == DIRECT:
            target, _, sender = rest.partition(".")
        else:
            target, sender = "", rest
        try:
            prefix = parse_group_prefix(data)
            if prefix is None:
                raise DecodeError(None, "not a message group")
            count, claimed, _, offset = prefix
            if claimed != sender:
                self.drops["forged sender"] += 1
                return
            pairs = MessageGroup(sender, target or None, count, data, offset).pairs(self.limits)
        except DecodeError as exc:
            self.drops["malformed"] += 1
            self._log.warning("dropped a malformed NATS message from {}: {}", sender, exc.reason)
            return
        if self._callback is not None and pairs:
            try:
                self._callback(kind, sender, pairs)
            except Exception:  # the receiver's bug must not stop this reader
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
        """Send what is queued, then close the connection."""
        self.closing = True
        if self._flush_scheduled:
            self._flush()
        await self._idle.wait()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None
        if not self.client.is_closed:
            if self.client.is_connected:
                try:
                    await self.client.flush(timeout=2)
                except Exception as exc:  # going away anyway
                    self._log.debug("could not flush before closing: {}", exc)
            await self.client.close()


def _group(sender: str, target: str | None, pairs: list[bytes]) -> bytes:
    return messages_prefix(sender, target, len(pairs)) + b"".join(pairs)
