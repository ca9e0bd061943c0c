"""The asyncio adapter around one sans-I/O `Protocol`.

`Connection` is the `asyncio.Protocol` the event loop feeds: `data_received` hands the
bytes to the state machine, passes the message groups it produced on (to a callback
or to the queue `recv()` reads), and writes back whatever the state machine answered.
It adds what needs a clock or a socket:

* write coalescing: frames queued during one loop iteration leave in one
  `transport.write`, or sooner once `FLUSH_BYTES` are waiting; when traffic looks like
  request/response (little to coalesce), the first message of an iteration is written
  at once, which saves a loop iteration of latency per hop; when it looks like a stream
  (`EAGER_BELOW` or more), what an iteration queued waits for the next one's, up to
  `HOLD_BELOW` bytes, and the two leave in one write (on loopback each write cost
  ~13 us of kernel time whatever its size, a third of a 256-message iteration's);
* an outgoing queue with counts: while the socket's buffer is over its high-water
  mark, frames wait in this connection's own backlog, counted in bytes and messages
  (`pending_bytes`, `pending_messages`); `send()` waits for it to drain. A queue over
  `max_pending_bytes`/`max_pending_messages` is *congested*: the congestion callback
  hears of it (a `Router` applies its slow-consumer policy there), and a connection
  nobody watches is dropped once its queue passes `max_buffer`;
* receive backpressure: a queue of received messages past `max_queue` pauses reading,
  so a flood from the peer turns into TCP flow control instead of memory;
* heartbeats: a Ping every `heartbeat_interval` with a sequence number the peer must
  echo; only a Pong answering a Ping this side sent proves the peer alive, so a peer
  that never reads cannot pass for a live one. A peer silent for `heartbeat_timeout`
  is declared dead.
"""

from __future__ import annotations

import asyncio
import collections
import secrets
from collections.abc import Callable
from typing import Any, Final, cast

from loguru import logger

from .errors import ConnectionClosedOK, DecodeError, InvalidStateError
from .inbox import Inbox
from .limits import DEFAULT_LIMITS, DecodeLimits
from .protocol import (
    Closed,
    FrameDropped,
    HandshakeComplete,
    MessagesDropped,
    PeerAuthenticated,
    PongReceived,
    Protocol,
    Route,
)
from .wire import Envelope, MessageGroup, PeerInfo

__all__ = [
    "FLUSH_BYTES",
    "Authorizer",
    "CongestionCallback",
    "Connection",
    "ConnectionOptions",
    "GroupCallback",
    "MessageCallback",
]

#: Queued bytes that trigger a write without waiting for the end of the loop iteration.
FLUSH_BYTES: Final = 256 * 1024
#: An iteration that left fewer bytes than this to coalesce makes the next one eager.
EAGER_BELOW: Final = 2048
#: A stream's iteration that left fewer bytes than this holds them for one more.
HOLD_BELOW: Final = 64 * 1024

#: Called on the server with an authenticated client and the key id of the token it
#: proved (empty without one); returns a refusal reason, or None to admit it, or a dict
#: to admit it with these fields added to its Welcome's extra.
Authorizer = Callable[[PeerInfo, bytes], "str | dict[str, Any] | None"]
#: Receives each received group's messages: ``(sender, target, [(tag, body), ...])``.
MessageCallback = Callable[[str, "str | None", list[tuple[str, bytes]]], None]
#: Receives message groups undecoded, straight from the read path (a router's view).
GroupCallback = Callable[[list[MessageGroup]], None]
#: Called with (connection, True) when its outgoing queue goes over its limit and with
#: (connection, False) when it is back under half of it.
CongestionCallback = Callable[["Connection", bool], None]


class ConnectionOptions:
    """Tunables shared by clients and servers; every default lives here.

    Args:
        heartbeat_interval: seconds between Pings; None disables heartbeats.
        heartbeat_timeout: seconds without an answering Pong before the peer is dead.
        max_pending_bytes: outgoing bytes (backlog plus socket buffer) over which the
            connection is congested.
        max_pending_messages: the same bound counted in messages.
        max_buffer: outgoing bytes at which a connection without a congestion callback
            is dropped as not reading.
        max_queue: received messages held for `recv()` before reading pauses.
        max_queue_bytes: the same bound counted in the bytes they arrived in.
        write_high_water: socket buffer size above which frames wait in the backlog.
        close_timeout: seconds `close()` waits for the buffer to drain before aborting.
        limits: what decoding one received frame may cost (`transport.limits`).
    """

    __slots__ = (
        "heartbeat_interval",
        "heartbeat_timeout",
        "max_pending_bytes",
        "max_pending_messages",
        "max_buffer",
        "max_queue",
        "max_queue_bytes",
        "write_high_water",
        "close_timeout",
        "limits",
    )

    def __init__(
        self,
        *,
        heartbeat_interval: float | None = 1.0,
        heartbeat_timeout: float = 5.0,
        max_pending_bytes: int = 8 * 2**20,
        max_pending_messages: int = 100_000,
        max_buffer: int = 64 * 2**20,
        max_queue: int = 10_000,
        max_queue_bytes: int = 32 * 2**20,
        write_high_water: int = 1 * 2**20,
        close_timeout: float = 2.0,
        limits: DecodeLimits = DEFAULT_LIMITS,
    ) -> None:
        if heartbeat_interval is not None and not 0 < heartbeat_interval < heartbeat_timeout:
            raise ValueError(
                f"heartbeat_interval must be > 0 and below heartbeat_timeout "
                f"({heartbeat_interval} vs {heartbeat_timeout})"
            )
        if min(max_queue, max_queue_bytes, max_pending_bytes, max_pending_messages) < 1:
            raise ValueError("queue limits must be positive")
        if max_buffer < max_pending_bytes:
            raise ValueError("max_buffer must be at least max_pending_bytes")
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.max_pending_bytes = max_pending_bytes
        self.max_pending_messages = max_pending_messages
        self.max_buffer = max_buffer
        self.max_queue = max_queue
        self.max_queue_bytes = max_queue_bytes
        self.write_high_water = write_high_water
        self.close_timeout = close_timeout
        self.limits = limits


class Connection(asyncio.Protocol):
    """An open (or opening) connection to one peer.

    Obtain one from `transport.connect()` or as the argument of a `transport.serve()`
    handler. Receive with `recv()`/`recv_batch()`/`async for`, or hand messages to a
    callback (`set_message_callback`); send with `send()` (waits under backpressure)
    or `send_nowait()`.
    """

    def __init__(
        self,
        protocol: Protocol,
        options: ConnectionOptions | None = None,
        *,
        authorize: Authorizer | None = None,
    ) -> None:
        self.protocol = protocol
        self.options = options or ConnectionOptions()
        self.codec = protocol.codec
        self._authorize = authorize
        #: called once the socket is there (a server counts handshakes per address)
        self.on_made: Callable[[Connection], None] | None = None
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._inbox = Inbox(self.options.limits)
        self._on_groups: GroupCallback | None = None
        self._on_messages: MessageCallback | None = None
        self._on_congestion: CongestionCallback | None = None
        self._recv_waiter: asyncio.Future[None] | None = None
        self._reading_paused = False
        self._inbox_full = False  # the recv() queue is over its bound
        self._holds = 0  # pause_reading() calls not yet resumed
        self._writing_paused = False  # the transport's own state
        self._backlog: collections.deque[tuple[bytes, int]] = collections.deque()
        # The protocol tells when something is queued, and keeps `writing_paused`
        # where `Route.send` returns it.
        protocol.on_queued = self._queued
        protocol.flush_bytes = FLUSH_BYTES
        self._backlog_bytes = 0
        self._backlog_messages = 0
        #: whether the outgoing queue is over its limit (see `CongestionCallback`)
        self.congested = False
        #: messages dropped on this side, by reason ("over limit", "malformed"...)
        self.drops: collections.Counter[str] = collections.Counter()
        #: messages the peer (a relay) reported dropping for us
        self.dropped_by_peer = 0
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._flush_handle: asyncio.Handle | None = None
        self._eager = True  # see _end_of_tick
        self._held = False  # see _end_of_tick
        self._opened: asyncio.Future[PeerInfo] = self._loop.create_future()
        self._lost: asyncio.Future[None] = self._loop.create_future()
        self._keepalive_task: asyncio.Task[None] | None = None
        self._last_pong = 0.0
        # Pings carry a sequence starting at a random point: a peer that does not read
        # them cannot answer them.
        self._ping_sent = self._ping_acked = secrets.randbits(48)
        self._closing = False
        self.remote_address: Any = None
        self._log = logger

    # -- identity and state ----------------------------------------------------------

    @property
    def peer(self) -> PeerInfo:
        """The peer's identity, known once the handshake is complete.

        Raises:
            InvalidStateError: the handshake has not completed.
        """
        if self.protocol.peer is None:
            raise InvalidStateError("the handshake has not completed")
        return self.protocol.peer

    @property
    def key(self) -> bytes:
        """Key id of the token this connection was authenticated with (empty without)."""
        return self.protocol.key

    @property
    def closed(self) -> bool:
        """True once the connection can no longer send."""
        return self.protocol.closed is not None

    @property
    def close_reason(self) -> str | None:
        """Why the connection closed, or None while it is open."""
        closed = self.protocol.closed
        return closed.reason if closed is not None else None

    @property
    def writing_paused(self) -> bool:
        """True while frames wait: the socket's buffer is over its high-water mark, or
        frames are in the backlog. Senders should `drain()`."""
        return self.protocol.writing_paused

    @property
    def reading_paused(self) -> bool:
        """True while this side holds back reading because `recv()` is behind."""
        return self._reading_paused

    @property
    def pending_bytes(self) -> int:
        """Outgoing bytes not yet taken by the kernel: the backlog and the socket buffer."""
        transport = self._transport
        buffered = transport.get_write_buffer_size() if transport is not None else 0
        return self._backlog_bytes + buffered + self.protocol.bytes_pending

    @property
    def pending_messages(self) -> int:
        """Outgoing messages waiting in the backlog (and not yet framed)."""
        return self._backlog_messages + self.protocol.messages_pending

    async def wait_open(self) -> PeerInfo:
        """Wait for the handshake; return the peer's identity.

        Raises:
            HandshakeError: the handshake was refused (by either side).
            ConnectionClosed: the connection dropped during the handshake.
        """
        return await asyncio.shield(self._opened)

    # -- asyncio.Protocol callbacks --------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        self.remote_address = transport.get_extra_info("peername")
        self._log = logger.bind(peer=str(self.remote_address))
        # Congestion ends in resume_writing(), so the socket must pause before the
        # connection can be congested: its high-water mark stays under half the bound.
        options = self.options
        transport.set_write_buffer_limits(
            high=min(options.write_high_water, options.max_pending_bytes // 2)
        )
        self._flush()
        if self.on_made is not None:
            self.on_made(self)

    def data_received(self, data: bytes) -> None:
        protocol = self.protocol
        protocol.receive_data(data)
        groups = protocol.messages_received()
        if groups:
            self._deliver(groups)
        events = protocol.events_received()
        if events:
            self._process(events)
        if protocol.bytes_pending and self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._end_of_tick)

    def eof_received(self) -> bool | None:
        self.protocol.receive_eof()
        self._deliver(self.protocol.messages_received())
        self._process(self.protocol.events_received())
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.protocol.closed is None:
            reason = f"connection lost: {exc}" if exc else "connection lost"
            self.protocol.receive_eof()
            self._process(self.protocol.events_received())
            if self.protocol.closed is not None and exc is not None:
                self._log.debug("{}", reason)
        if self._keepalive_task is not None:
            self._keepalive_task.cancel()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._backlog.clear()
        self.protocol.writing_paused = self._writing_paused
        self._backlog_bytes = self._backlog_messages = 0
        self._wake_all()
        if not self._lost.done():
            self._lost.set_result(None)

    def pause_writing(self) -> None:
        self._writing_paused = self.protocol.writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        transport = self._transport
        backlog = self._backlog
        while backlog and not self._writing_paused and transport is not None:
            data, count = backlog.popleft()
            self._backlog_bytes -= len(data)
            self._backlog_messages -= count
            transport.write(data)  # may pause writing again, synchronously
        paused = self.protocol.writing_paused = self._writing_paused or bool(backlog)
        if self.congested and self._under_half():
            self._set_congested(False)
        if not paused:
            waiters, self._drain_waiters = self._drain_waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    # -- receiving: callbacks --------------------------------------------------------

    def set_message_callback(self, callback: MessageCallback | None) -> None:
        """Hand each received group's messages to `callback` instead of queueing them.

        The callback runs inside the read path with ``(sender, target, pairs)``, the
        pairs being ``(tag, body)`` with bodies still encoded (`Codec.decode` builds
        them), so it must not block. A frame that cannot be decoded is dropped with a
        warning and counted in `drops`. Messages already queued are handed over first,
        in order. An exception in the callback is logged and closes this connection
        only. `None` goes back to queueing for `recv()`.
        """
        self._on_messages = callback
        self._on_groups = None
        self._hand_over_queued()

    def set_group_callback(self, callback: GroupCallback | None) -> None:
        """Hand received `MessageGroup`s to `callback` undecoded (what a router wants).

        Same rules as `set_message_callback`.
        """
        self._on_groups = callback
        self._on_messages = None
        self._hand_over_queued()

    def set_congestion_callback(self, callback: CongestionCallback | None) -> None:
        """Be told when the outgoing queue goes over its limit and back under half.

        With a callback set, congestion is the callback's to handle (a `Router` cuts
        slow consumers); without one, a queue past `max_buffer` drops the peer.
        """
        self._on_congestion = callback

    def _hand_over_queued(self) -> None:
        if (self._on_groups or self._on_messages) and self._inbox.count:
            groups = self._inbox.take_groups()
            self._taken()
            self._deliver(groups)

    def _deliver(self, groups: list[MessageGroup]) -> None:
        if not groups:
            return
        on_groups = self._on_groups
        if on_groups is not None:
            try:
                on_groups(groups)
            except Exception as exc:
                self._callback_failed(exc)
            return
        on_messages = self._on_messages
        if on_messages is not None:
            limits = self.options.limits
            for group in groups:
                try:
                    pairs = group.pairs(limits)
                except DecodeError as exc:
                    self.frame_dropped(group.count, exc)
                    continue
                if group.malformed:
                    self._malformed(group.malformed)
                try:
                    on_messages(group.sender, group.target, pairs)
                except Exception as exc:
                    self._callback_failed(exc)
            return
        inbox = self._inbox
        inbox.put(groups)
        waiter = self._recv_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if not self._inbox_full and (
            inbox.count >= self.options.max_queue or inbox.bytes >= self.options.max_queue_bytes
        ):
            self._inbox_full = True
            self._update_reading()

    def _callback_failed(self, exc: Exception) -> None:
        self._log.opt(exception=exc).error("message callback failed: {}", type(exc).__name__)
        if self.protocol.closed is None:
            self.protocol.fail(f"internal error: {type(exc).__name__}")
            self._process(self.protocol.events_received())

    def frame_dropped(self, count: int, error: DecodeError) -> None:
        """Count and report `count` messages of a frame that could not be decoded."""
        self.drops["over limit" if "limit" in error.reason else "malformed"] += count
        self._log.warning("dropped a frame of {} message(s): {}", count, error)

    def _malformed(self, count: int) -> None:
        self.drops["malformed"] += count
        self._log.warning("dropped {} malformed message(s) of a frame", count)

    # -- events ----------------------------------------------------------------------

    def _process(self, events: list[Any]) -> None:
        for event in events:
            self._handle_event(event)

    def _handle_event(self, event: Any) -> None:
        kind = type(event)
        if kind is PongReceived:
            # Only an answer to a ping of ours counts (see the module docstring).
            if self._ping_acked < event.seq <= self._ping_sent:
                self._ping_acked = event.seq
                self._last_pong = self._loop.time()
        elif kind is FrameDropped:
            self.drops["malformed"] += 1
            self._log.warning("dropped an undecodable frame: {}", event.error)
        elif kind is MessagesDropped:
            self.dropped_by_peer += event.messages
            self._log.warning(
                "the peer dropped {} message(s) for this side: it reads too slowly",
                event.messages,
            )
        elif kind is PeerAuthenticated:
            if self.protocol.closed is not None:  # a later frame in the same read broke it
                return
            authorize = self._authorize
            refusal = authorize(event.peer, event.key) if authorize is not None else None
            if refusal is None:
                self.protocol.accept()
            elif isinstance(refusal, dict):  # admitted, with words for this client alone
                me = self.protocol.identity
                self.protocol.accept(me._replace(extra={**me.extra, **refusal}))
            else:
                self._log.warning("refused {}: {}", event.peer.name, refusal)
                self.protocol.reject(refusal)
            self._process(self.protocol.events_received())
        elif kind is HandshakeComplete:
            self._log = self._log.bind(peer=event.peer.name)
            self._last_pong = self._loop.time()
            if self.options.heartbeat_interval is not None:
                self._keepalive_task = self._loop.create_task(self._keepalive())
            if not self._opened.done():
                self._opened.set_result(event.peer)
        elif kind is Closed:
            self._on_closed(event)

    def _on_closed(self, event: Closed) -> None:
        if event.error is not None and not self._closing:
            if self._opened.done():
                self._log.warning("connection closed: {}", event.reason)
            else:  # the opener hears of it (HandshakeError) and says so, once
                self._log.debug("connection closed during the handshake: {}", event.reason)
        if not self._opened.done():
            error = event.error if event.error is not None else event.exception()
            self._opened.set_exception(error)
            self._opened.exception()  # retrieved here: the opener may already be gone
        self._wake_all()
        self._flush(final=True)
        if self._transport is not None:
            self._transport.close()
            self._loop.call_later(self.options.close_timeout, self._abort)

    def _abort(self) -> None:
        if self._transport is not None and not self._lost.done():
            self._transport.abort()

    def _wake_all(self) -> None:
        waiter = self._recv_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        waiters, self._drain_waiters = self._drain_waiters, []
        for future in waiters:
            if not future.done():
                future.set_result(None)

    # -- receiving: the queue --------------------------------------------------------

    def pause_reading(self) -> None:
        """Stop reading from the peer until a matching `resume_reading()`.

        For consumers with their own queues (e.g. a dispatcher): TCP flow control then
        holds the peer back. Holds nest. The peer's Pongs wait unread meanwhile, which
        this side does not hold against it; but this side cannot answer the peer's
        Pings either, so a hold longer than the peer's heartbeat timeout costs the
        connection.
        """
        self._holds += 1
        self._update_reading()

    def resume_reading(self) -> None:
        """Release one `pause_reading()` hold."""
        if self._holds:
            self._holds -= 1
            self._update_reading()

    def _update_reading(self) -> None:
        paused = self._inbox_full or self._holds > 0
        transport = self._transport
        if paused == self._reading_paused or transport is None or transport.is_closing():
            return
        self._reading_paused = paused
        if paused:
            transport.pause_reading()
        else:
            transport.resume_reading()

    def _taken(self) -> None:
        inbox = self._inbox
        for error in inbox.errors:
            self.frame_dropped(1, error)
        inbox.errors.clear()
        if self._inbox_full and (
            inbox.count <= self.options.max_queue // 2
            and inbox.bytes <= self.options.max_queue_bytes // 2
        ):
            self._inbox_full = False
            self._update_reading()

    async def _wait_inbox(self) -> None:
        while not self._inbox.count:
            if self.protocol.closed is not None:
                raise self.protocol.closed.exception()
            if self._recv_waiter is not None:
                raise InvalidStateError("recv() is already waiting in another task")
            self._recv_waiter = self._loop.create_future()
            try:
                await self._recv_waiter
            finally:
                self._recv_waiter = None

    async def recv(self) -> Envelope:
        """Return the next envelope from the peer, in order.

        Envelopes received before the connection closed are still returned; after
        them the close is raised. A frame that cannot be decoded is skipped with a
        warning.

        Raises:
            ConnectionClosedOK: the peer said goodbye (or we closed).
            ConnectionClosedError: the connection ended abnormally.
            InvalidStateError: another task is already waiting in `recv()`.
        """
        while True:
            await self._wait_inbox()
            try:
                envelope = self._inbox.take()
            except IndexError:  # what was waiting could not be decoded
                self._taken()
                continue
            self._taken()
            return envelope

    async def recv_batch(self, limit: int = 1024) -> list[Envelope]:
        """Wait for at least one envelope and return up to `limit` of them, in order.

        Raises:
            The same as `recv()`.
        """
        while True:
            await self._wait_inbox()
            batch = self._inbox.take_many(limit)
            self._taken()
            if batch:
                return batch

    async def recv_groups(self) -> list[MessageGroup]:
        """Wait for at least one message and return all waiting, as received groups.

        The fastest way to consume: frames are decoded only when their `pairs()` are
        read.

        Raises:
            The same as `recv()`.
        """
        await self._wait_inbox()
        groups = self._inbox.take_groups()
        self._taken()
        return groups

    def __aiter__(self) -> Connection:
        return self

    async def __anext__(self) -> Envelope:
        """The next envelope; iteration ends on an orderly close and raises otherwise."""
        try:
            return await self.recv()
        except ConnectionClosedOK:
            raise StopAsyncIteration from None

    def decode(self, envelope: Envelope) -> Any:
        """Build the object an envelope carries, with this connection's codec.

        Raises:
            UnknownTypeError: its tag, or a type nested in it, is not registered here.
            DecodeError: the body does not fit its type.
        """
        return self.codec.decode(envelope.tag, envelope.body)

    # -- sending ---------------------------------------------------------------------

    def route(self, sender: str, target: str | None) -> Route:
        """The way to send many messages from `sender` to `target` (None: to everyone):
        `Route.send` queues one and says whether to `drain()`, the cheapest way there is
        (see `Protocol.route`)."""
        return self.protocol.route(sender, target)

    def send_nowait(self, obj: Any, *, target: str | None = None, sender: str = "") -> None:
        """Encode and queue a message without waiting.

        Raises:
            EncodeError: `obj` cannot be encoded.
            ConnectionClosed: the connection is closed.
            FrameSizeError: the encoded message is over the frame size limit.
        """
        self.protocol.send_object(obj, sender, target)

    def send_packed_nowait(self, sender: str, target: str | None, tag: str, body: bytes) -> None:
        """Queue a message whose body is already encoded (encode once, send to many)."""
        self.protocol.send_message(sender, target, tag, body)

    def forward_nowait(self, sender: str, target: str | None, count: int, packed: bytes) -> None:
        """Queue `count` messages received elsewhere, as received (`MessageGroup.tail`)."""
        self.protocol.forward(sender, target, count, packed)

    def send_envelope_nowait(self, envelope: Envelope) -> None:
        """Queue a received envelope again, e.g. an echo or a relay passing it on."""
        self.protocol.send_message(envelope.sender, envelope.target, envelope.tag, envelope.body)

    async def send(self, obj: Any, *, target: str | None = None, sender: str = "") -> None:
        """Encode and send a message, waiting while the peer applies backpressure.

        Raises:
            The same as `send_nowait()`.
        """
        if self.protocol.send_object(obj, sender, target):
            await self.drain()

    async def send_envelope(self, envelope: Envelope) -> None:
        """`send_envelope_nowait()`, then wait under backpressure."""
        self.send_envelope_nowait(envelope)
        if self.protocol.writing_paused:
            await self.drain()

    def _queued(self) -> None:
        """Something was queued (the protocol's `on_queued`). Write it now, or at the
        end of this loop iteration (see `_end_of_tick`)."""
        if self.protocol.bytes_pending >= FLUSH_BYTES:
            self._flush()
        elif self._flush_handle is None:
            if self._eager:
                self._flush()
            self._flush_handle = self._loop.call_soon(self._end_of_tick)

    def _end_of_tick(self) -> None:
        # Runs once per loop iteration in which something was sent. It writes what the
        # iteration queued in one go, and picks the mode for the next iteration: when
        # little was left to coalesce, sending looks like request/response, and the
        # first message of an iteration goes out at once instead of a tick later.
        # A stream's bytes are held for one more iteration (see the module docstring).
        self._flush_handle = None
        pending = self.protocol.bytes_pending
        self._eager = pending < EAGER_BELOW
        if not pending:
            return
        if not (self._eager or self._held) and pending < HOLD_BELOW:
            self._held = True
            self._flush_handle = self._loop.call_soon(self._end_of_tick)
            return
        self._flush()

    def _flush(self, *, final: bool = False) -> None:
        self._held = False
        transport = self._transport
        if transport is None:
            return
        count = self.protocol.messages_pending
        data = self.protocol.data_to_send()
        if not data or transport.is_closing():
            return
        if final:  # closing: what waits goes first, in order
            while self._backlog:
                transport.write(self._backlog.popleft()[0])
            self.protocol.writing_paused = self._writing_paused
            self._backlog_bytes = self._backlog_messages = 0
            transport.write(data)
        elif self.protocol.writing_paused:
            self._backlog.append((data, count))
            self._backlog_bytes += len(data)
            self._backlog_messages += count
        else:
            transport.write(data)
        if not self.congested and (
            self._backlog_bytes + transport.get_write_buffer_size() > self.options.max_pending_bytes
            or self._backlog_messages > self.options.max_pending_messages
        ):
            self._set_congested(True)

    def _under_half(self) -> bool:
        transport = self._transport
        buffered = transport.get_write_buffer_size() if transport is not None else 0
        return (
            self._backlog_bytes + buffered <= self.options.max_pending_bytes // 2
            and self._backlog_messages <= self.options.max_pending_messages // 2
        )

    def _set_congested(self, congested: bool) -> None:
        self.congested = congested
        callback = self._on_congestion
        if callback is not None:
            callback(self, congested)
        elif (
            congested
            and self.protocol.closed is None
            and self.pending_bytes > (self.options.max_buffer)
        ):
            self.fail(f"peer is not reading: {self.pending_bytes} bytes waiting to be sent")
        elif congested:
            self.congested = False  # not over max_buffer yet: look again next time

    def fail(self, reason: str) -> None:
        """Close abnormally at once: a goodbye with `reason` goes after what is queued,
        and the socket is aborted if that has not drained within `close_timeout`."""
        if self.protocol.closed is None:
            self.protocol.fail(reason)
            self._process(self.protocol.events_received())

    def send_dropped(self, count: int) -> None:
        """Tell the peer that `count` messages meant for it were dropped (a relay)."""
        if self.protocol.closed is None:
            self.protocol.send_dropped(count)
            self._queued()

    async def drain(self) -> None:
        """Flush queued frames and wait until the backlog has gone to the socket.

        Raises:
            ConnectionClosed: the connection closed while waiting.
        """
        self._flush()
        while self.protocol.writing_paused and self.protocol.closed is None:
            waiter: asyncio.Future[None] = self._loop.create_future()
            self._drain_waiters.append(waiter)
            await waiter
        if self.protocol.closed is not None:
            raise self.protocol.closed.exception()

    # -- heartbeats ------------------------------------------------------------------

    async def _keepalive(self) -> None:
        interval = self.options.heartbeat_interval
        assert interval is not None
        timeout = self.options.heartbeat_timeout
        loop = self._loop
        next_ping = loop.time() + interval
        while self.protocol.closed is None:
            now = loop.time()
            if self._reading_paused:
                # The peer's Pongs wait unread behind our own backpressure: not its fault.
                self._last_pong = now
            if now - self._last_pong >= timeout:
                self._heartbeat_timeout(now - self._last_pong)
                return
            if now >= next_ping:
                self._ping()
                next_ping = now + interval
            await asyncio.sleep(min(next_ping, self._last_pong + timeout) - now)

    def _ping(self) -> None:
        self._flush()  # what was queued keeps its place in the backlog
        self._ping_sent += 1
        self.protocol.send_ping(self._ping_sent)
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(self.protocol.data_to_send())  # the ping skips the backlog

    def _heartbeat_timeout(self, silent: float) -> None:
        reason = f"heartbeat timeout: no answer from the peer for {silent:.1f} s"
        self.protocol.fail(reason)
        self._process(self.protocol.events_received())

    # -- closing ---------------------------------------------------------------------

    def start_close(self, reason: str = "closed") -> None:
        """Queue a goodbye and begin closing, without waiting (see `close()`)."""
        self._closing = True
        if self.protocol.closed is None:
            self.protocol.close(reason)
            self._process(self.protocol.events_received())
        elif self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    async def close(self, reason: str = "closed") -> None:
        """Say goodbye, flush what is queued, close, and wait until it is done."""
        self.start_close(reason)
        await self.wait_closed()

    def abort(self) -> None:
        """Drop the connection at once, without a goodbye or flush."""
        self._closing = True
        # A transport that closed after flushing may not have reported the loss yet;
        # aborting it then fails inside asyncio, so only a live one is aborted.
        if self._transport is not None and not self._lost.done():
            try:
                self._transport.abort()
            except AttributeError:  # CPython 3.11: already detached from its loop
                pass

    async def wait_closed(self) -> None:
        """Wait until the connection has ended and every task of this connection is done.

        While the connection is open this lasts until it ends, which heartbeats bound
        for a dead peer; once closing, the transport is aborted if it has not finished
        flushing within `close_timeout`.
        """
        if self._transport is not None:
            await asyncio.shield(self._lost)
        task = self._keepalive_task
        if task is not None:
            task.cancel()
            await asyncio.wait({task})
