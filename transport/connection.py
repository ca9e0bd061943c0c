"""The asyncio adapter around one sans-I/O `Protocol`.

`Connection` is the `asyncio.Protocol` the event loop feeds: `data_received` hands the
bytes to the state machine, queues the envelopes it produced for `recv()`, and writes
back whatever the state machine answered. It adds what needs a clock or a socket:

* write coalescing: frames queued during one loop iteration leave in one
  `transport.write`, or sooner once `FLUSH_BYTES` are waiting; when traffic looks like
  request/response (little to coalesce), the first message of an iteration is written
  at once, which saves a loop iteration of latency per hop;
* backpressure both ways: `send()` waits while the transport is paused; a queue of
  received envelopes past `max_queue` pauses reading, so a flood from the peer turns
  into TCP flow control instead of memory; a write buffer past `max_buffer` (a peer
  that stopped reading while we kept queueing with `send_nowait`) drops the peer;
* heartbeats: a Ping every `heartbeat_interval`; a peer whose Pongs stop for
  `heartbeat_timeout` is declared dead. While this side pauses reading it sends
  unsolicited Pongs, so a slow consumer is not mistaken for a dead one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Final, cast

from loguru import logger

from .errors import (
    ConnectionClosed,
    ConnectionClosedOK,
    InvalidStateError,
    UnknownTypeError,
)
from .inbox import Inbox
from .protocol import (
    Closed,
    FrameDropped,
    HandshakeComplete,
    PeerAuthenticated,
    PongReceived,
    Protocol,
)
from .wire import Envelope, MessageGroup, PeerInfo

__all__ = ["FLUSH_BYTES", "Authorizer", "Connection", "ConnectionOptions", "MessageCallback"]

#: Queued bytes that trigger a write without waiting for the end of the loop iteration.
FLUSH_BYTES: Final = 256 * 1024
#: An iteration that left fewer bytes than this to coalesce makes the next one eager.
EAGER_BELOW: Final = 2048

#: Called on the server with an authenticated client; returns a refusal reason or None.
Authorizer = Callable[[PeerInfo], "str | None"]
#: Receives message groups straight from the read path (see `set_message_callback`).
MessageCallback = Callable[[list[MessageGroup]], None]


class ConnectionOptions:
    """Tunables shared by clients and servers; every default lives here.

    Args:
        heartbeat_interval: seconds between Pings; None disables heartbeats.
        heartbeat_timeout: seconds without a Pong before the peer is declared dead.
        max_buffer: bytes allowed to wait in the write buffer before the peer is
            dropped as not reading.
        max_queue: received envelopes held for `recv()` before reading pauses.
        max_queue_bytes: the same bound counted in body bytes.
        write_high_water: transport buffer size above which `send()` waits.
        close_timeout: seconds `close()` waits for the buffer to drain before aborting.
    """

    __slots__ = (
        "heartbeat_interval",
        "heartbeat_timeout",
        "max_buffer",
        "max_queue",
        "max_queue_bytes",
        "write_high_water",
        "close_timeout",
    )

    def __init__(
        self,
        *,
        heartbeat_interval: float | None = 1.0,
        heartbeat_timeout: float = 5.0,
        max_buffer: int = 64 * 2**20,
        max_queue: int = 10_000,
        max_queue_bytes: int = 32 * 2**20,
        write_high_water: int = 1 * 2**20,
        close_timeout: float = 2.0,
    ) -> None:
        if heartbeat_interval is not None and not 0 < heartbeat_interval < heartbeat_timeout:
            raise ValueError(
                f"heartbeat_interval must be > 0 and below heartbeat_timeout "
                f"({heartbeat_interval} vs {heartbeat_timeout})"
            )
        if max_queue < 1 or max_queue_bytes < 1:
            raise ValueError("max_queue and max_queue_bytes must be positive")
        if max_buffer < write_high_water:
            raise ValueError("max_buffer must be at least write_high_water")
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.max_buffer = max_buffer
        self.max_queue = max_queue
        self.max_queue_bytes = max_queue_bytes
        self.write_high_water = write_high_water
        self.close_timeout = close_timeout


class Connection(asyncio.Protocol):
    """An open (or opening) connection to one peer.

    Obtain one from `transport.connect()` or as the argument of a `transport.serve()`
    handler. Receive with `recv()`/`recv_batch()`/`async for`; send with `send()`
    (waits under backpressure) or `send_nowait()`.
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
        #: `Codec.build`: the object of one ``(tag, body)`` pair of a `MessageGroup`
        #: (check `MessageGroup.unresolved` first, as `decode` does).
        self.build = self.codec.build
        self._authorize = authorize
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._inbox = Inbox()
        self._callback: MessageCallback | None = None
        self._recv_waiter: asyncio.Future[None] | None = None
        self._reading_paused = False
        self._inbox_full = False  # the recv() queue is over its bound
        self._holds = 0  # pause_reading() calls not yet resumed
        self._writing_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._flush_handle: asyncio.Handle | None = None
        self._eager = True  # see _end_of_tick
        self._opened: asyncio.Future[PeerInfo] = self._loop.create_future()
        self._lost: asyncio.Future[None] = self._loop.create_future()
        self._keepalive_task: asyncio.Task[None] | None = None
        self._last_pong = 0.0
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
    def closed(self) -> bool:
        """True once the connection can no longer send."""
        return self.protocol.closed is not None

    @property
    def close_reason(self) -> str | None:
        """Why the connection closed, or None while it is open."""
        closed = self.protocol.closed
        return closed.reason if closed is not None else None

    @property
    def reading_paused(self) -> bool:
        """True while this side holds back reading because `recv()` is behind."""
        return self._reading_paused

    @property
    def writing_paused(self) -> bool:
        """True while the transport's write buffer is over its high-water mark."""
        return self._writing_paused

    def close_exception(self) -> ConnectionClosed:
        """The exception that describes how the connection ended."""
        closed = self.protocol.closed
        if closed is None:
            raise InvalidStateError("the connection is not closed")
        return closed.exception()

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
        transport.set_write_buffer_limits(high=self.options.write_high_water)
        self._flush()

    def data_received(self, data: bytes) -> None:
        protocol = self.protocol
        protocol.receive_data(data)
        # (The protocol's queues are read directly here: this runs for every read.)
        if protocol._messages:
            self._deliver(protocol.messages_received(), len(data))
        if protocol._events:
            self._process(protocol.events_received())
        if protocol._pending and self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._end_of_tick)

    def eof_received(self) -> bool | None:
        self.protocol.receive_eof()
        self._deliver(self.protocol.messages_received(), 0)
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
        self._wake_all()
        if not self._lost.done():
            self._lost.set_result(None)

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- events ----------------------------------------------------------------------

    def set_message_callback(self, callback: MessageCallback | None) -> None:
        """Hand received messages to `callback` as they arrive, instead of queueing them.

        The callback runs inside the read path with each batch of `MessageGroup`s, so it
        must not block; it suits routers that only move messages on. Messages already
        queued are handed over first, in order. An exception in the callback is logged
        and closes this connection only. `None` goes back to queueing for `recv()`.
        """
        self._callback = callback
        if callback is not None and self._inbox.count:
            groups = self._inbox.take_groups()
            self._taken()
            self._run_callback(groups)

    def _run_callback(self, groups: list[MessageGroup]) -> None:
        assert self._callback is not None
        try:
            self._callback(groups)
        except Exception as exc:
            self._log.exception("message callback failed")
            if self.protocol.closed is None:
                self.protocol.fail(f"internal error: {type(exc).__name__}")
                self._process(self.protocol.events_received())

    def _deliver(self, groups: list[MessageGroup], nbytes: int) -> None:
        if not groups:
            return
        if self._callback is not None:
            self._run_callback(groups)
            return
        inbox = self._inbox
        inbox.put(groups, nbytes)
        waiter = self._recv_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if not self._inbox_full and (
            inbox.count >= self.options.max_queue or inbox.bytes >= self.options.max_queue_bytes
        ):
            self._inbox_full = True
            self._update_reading()

    def _process(self, events: list[Any]) -> None:
        for event in events:
            self._handle_event(event)

    def _handle_event(self, event: Any) -> None:
        if type(event) is PongReceived:
            self._last_pong = self._loop.time()
        elif type(event) is FrameDropped:
            self._log.warning("dropped an undecodable frame: {}", event.error)
        elif type(event) is PeerAuthenticated:
            if self.protocol.closed is not None:  # a later frame in the same read broke it
                return
            refusal = self._authorize(event.peer) if self._authorize is not None else None
            if refusal is None:
                self.protocol.accept()
                self._process(self.protocol.events_received())
            else:
                self._log.warning("refused {}: {}", event.peer.name, refusal)
                self.protocol.reject(refusal)
                self._process(self.protocol.events_received())
        elif type(event) is HandshakeComplete:
            self._log = self._log.bind(peer=event.peer.name)
            self._last_pong = self._loop.time()
            if self.options.heartbeat_interval is not None:
                self._keepalive_task = self._loop.create_task(self._keepalive())
            if not self._opened.done():
                self._opened.set_result(event.peer)
        elif type(event) is Closed:
            self._on_closed(event)

    def _on_closed(self, event: Closed) -> None:
        if event.error is not None and not self._closing:
            self._log.warning("connection closed: {}", event.reason)
        if not self._opened.done():
            error = event.error if event.error is not None else event.exception()
            self._opened.set_exception(error)
            self._opened.exception()  # retrieved here: the opener may already be gone
        self._wake_all()
        self._flush()
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
        self.resume_writing()

    # -- receiving -------------------------------------------------------------------

    def pause_reading(self) -> None:
        """Stop reading from the peer until a matching `resume_reading()`.

        For consumers with their own queues (e.g. a dispatcher): TCP flow control then
        holds the peer back. Holds nest. While reading is held, heartbeats are answered
        with unsolicited Pongs, so the peer does not take the pause for death.
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
        if self._inbox_full and (
            len(self._inbox) <= self.options.max_queue // 2
            and self._inbox.bytes <= self.options.max_queue_bytes // 2
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
        them the close is raised.

        Raises:
            ConnectionClosedOK: the peer said goodbye (or we closed).
            ConnectionClosedError: the connection ended abnormally.
            InvalidStateError: another task is already waiting in `recv()`.
        """
        inbox = self._inbox
        if not inbox.count:
            await self._wait_inbox()
        envelope = inbox.take()
        if self._inbox_full:
            self._taken()
        return envelope

    async def recv_batch(self, limit: int = 1024) -> list[Envelope]:
        """Wait for at least one envelope and return up to `limit` of them, in order.

        Raises:
            The same as `recv()`.
        """
        if not self._inbox:
            await self._wait_inbox()
        batch = self._inbox.take_many(limit)
        self._taken()
        return batch

    async def recv_groups(self) -> list[MessageGroup]:
        """Wait for at least one message and return all waiting, as received groups.

        The fastest way to consume: no per-message object is built (see
        `MessageGroup.pairs()` and `build()`).

        Raises:
            The same as `recv()`.
        """
        if not self._inbox:
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
        if envelope.unresolved is not None:
            raise UnknownTypeError(envelope.unresolved)
        return self.codec.build(envelope.tag, envelope.body)

    # -- sending ---------------------------------------------------------------------

    def send_nowait(self, obj: Any, *, target: str | None = None, sender: str = "") -> None:
        """Encode and queue a message without waiting.

        Raises:
            EncodeError: `obj` cannot be encoded.
            ConnectionClosed: the connection is closed.
            FrameSizeError: the encoded message is over the frame size limit.
        """
        # `_queued()`, inlined: this is the hot path of sending.
        if self.protocol.send_object(obj, sender, target) >= FLUSH_BYTES:
            self._flush()
        elif self._flush_handle is None:
            if self._eager:
                self._flush()
            self._flush_handle = self._loop.call_soon(self._end_of_tick)

    def send_packed_nowait(self, sender: str, target: str | None, tag: str, body: bytes) -> None:
        """Queue a message whose body is already packed (encode once, send to many)."""
        self.protocol.send_message(sender, target, tag, body)
        self._queued()

    def send_many_nowait(
        self, sender: str, target: str | None, messages: list[tuple[bytes, bytes]]
    ) -> None:
        """Queue ``(packed tag, packed body)`` pairs packed once for many connections."""
        self.protocol.send_messages(sender, target, messages)
        self._queued()

    def send_envelope_nowait(self, envelope: Envelope) -> None:
        """Queue a received envelope again, e.g. a relay forwarding it."""
        body = self.codec.pack(envelope.body)
        self.protocol.send_message(envelope.sender, envelope.target, envelope.tag, body)
        self._queued()

    async def send(self, obj: Any, *, target: str | None = None, sender: str = "") -> None:
        """Encode and send a message, waiting while the peer applies backpressure.

        Raises:
            The same as `send_nowait()`.
        """
        self.send_nowait(obj, target=target, sender=sender)
        if self._writing_paused:
            await self.drain()

    async def send_envelope(self, envelope: Envelope) -> None:
        """`send_envelope_nowait()`, then wait under backpressure."""
        self.send_envelope_nowait(envelope)
        if self._writing_paused:
            await self.drain()

    def _queued(self) -> None:
        if self.protocol._pending >= FLUSH_BYTES:
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
        self._flush_handle = None
        pending = self.protocol._pending
        self._eager = pending < EAGER_BELOW
        if pending:
            self._flush()

    def _flush(self) -> None:
        transport = self._transport
        if transport is None:
            return
        data = self.protocol.data_to_send()
        if not data or transport.is_closing():
            return
        transport.write(data)
        buffered = transport.get_write_buffer_size()
        if buffered > self.options.max_buffer and self.protocol.closed is None:
            self._overflow(buffered)

    def _overflow(self, buffered: int) -> None:
        reason = (
            f"peer is not reading: {buffered} bytes waiting to be sent, "
            f"limit {self.options.max_buffer}"
        )
        self.protocol.fail(reason)
        self.protocol.data_to_send()  # the goodbye cannot get past a full buffer
        self._process(self.protocol.events_received())
        if self._transport is not None:
            self._transport.abort()

    async def drain(self) -> None:
        """Flush queued frames and wait until the transport accepts more.

        Raises:
            ConnectionClosed: the connection closed while waiting.
        """
        self._flush()
        while self._writing_paused and self.protocol.closed is None:
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
        seq = 0
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
                seq += 1
                self.protocol.send_ping(seq)
                if self._reading_paused:
                    self.protocol.send_pong(0)
                self._flush()
                next_ping = now + interval
            await asyncio.sleep(min(next_ping, self._last_pong + timeout) - now)

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
        if self._transport is not None:
            self._transport.abort()

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
