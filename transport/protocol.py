"""Sans-I/O connection state machine: bytes in, events and bytes out.

`Protocol` composes framing, the wire records and the handshake. It never raises on
anything the peer sends: a broken stream, an oversized frame or a failed handshake
becomes a `Closed` event (after a Goodbye or Reject telling the peer why), and an
undecodable frame on an open connection becomes a `FrameDropped` event while the
connection stays up. It reads no clock and does no I/O; heartbeat timing and sockets
belong to the asyncio adapter.

States::

    HANDSHAKE --(Welcome sent / received)--> OPEN --(Goodbye, error, EOF, close())--> CLOSED
        \\--(Reject, error, EOF)-------------------------------------------------^
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, Final, NamedTuple

from . import handshake
from .codec import Codec
from .errors import (
    AuthenticationError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    DecodeError,
    FrameSizeError,
    HandshakeError,
    InvalidStateError,
    ProtocolError,
    VersionMismatchError,
)
from .framing import DEFAULT_MAX_FRAME_SIZE, HEADER_SIZE, FrameDecoder, encode_frame
from .handshake import HANDSHAKE_MAX_FRAME_SIZE
from .limits import DEFAULT_LIMITS, DecodeLimits, unpack
from .wire import (
    PROTOCOL_VERSION,
    ROUTE_ROOM,
    Challenge,
    Dropped,
    Goodbye,
    Hello,
    MessageGroup,
    PeerInfo,
    Ping,
    Pong,
    Proof,
    Record,
    Reject,
    Welcome,
    bin_header,
    encode_record,
    messages_header,
    messages_route,
    parse_group_prefix,
    peek_version,
    record_from_item,
)

__all__ = [
    "CLIENT",
    "CLOSED",
    "HANDSHAKE",
    "OPEN",
    "SERVER",
    "Closed",
    "Event",
    "FrameDropped",
    "HandshakeComplete",
    "MessagesDropped",
    "PeerAuthenticated",
    "PongReceived",
    "Protocol",
    "Route",
    "Side",
    "State",
]


class Side(enum.Enum):
    CLIENT = "client"
    SERVER = "server"


class State(enum.IntEnum):
    HANDSHAKE = 0
    OPEN = 1
    CLOSED = 2


CLIENT: Final = Side.CLIENT
SERVER: Final = Side.SERVER
HANDSHAKE: Final = State.HANDSHAKE
OPEN: Final = State.OPEN
CLOSED: Final = State.CLOSED


class PeerAuthenticated(NamedTuple):
    """Server side: the client passed version, workspace and token checks.

    The owner decides: `Protocol.accept()` or `Protocol.reject(reason)`. `key` is the
    key id of the secret it proved it knows (`handshake.key_id`), empty without one.
    """

    peer: PeerInfo
    key: bytes = b""


class HandshakeComplete(NamedTuple):
    """The connection is open; `peer` is the other side's identity."""

    peer: PeerInfo


class PongReceived(NamedTuple):
    seq: int


class MessagesDropped(NamedTuple):
    """The peer (a relay) dropped this many `messages` meant for us: we read too slowly."""

    messages: int


class FrameDropped(NamedTuple):
    """An undecodable frame was skipped; the connection stays up."""

    error: DecodeError


class Closed(NamedTuple):
    """The connection is over. `error` is set unless it ended with a Goodbye."""

    reason: str
    by_peer: bool
    error: Exception | None

    def exception(self) -> ConnectionClosed:
        """The exception a caller using the closed connection should see."""
        if self.error is None:
            return ConnectionClosedOK(self.reason, by_peer=self.by_peer)
        return ConnectionClosedError(self.reason, by_peer=self.by_peer)


Event = (
    PeerAuthenticated | HandshakeComplete | PongReceived | MessagesDropped | FrameDropped | Closed
)

#: Messages per group. Beyond a few hundred, unpacking gets slower per message (the
#: objects of one frame outgrow the CPU caches before they are consumed).
MAX_GROUP: Final = 256
#: The array headers of message groups of every size up to MAX_GROUP, packed once.
_HEADERS: Final = tuple(messages_header(n) for n in range(MAX_GROUP + 1))
#: ``bin`` headers of bodies under 256 bytes (most of them), packed once.
_BIN8: Final = tuple(bin_header(n) for n in range(256))

_CLIENT_AWAIT_SERVER: Final = "await-challenge-or-welcome"
_CLIENT_AWAIT_WELCOME: Final = "await-welcome"
_SERVER_AWAIT_HELLO: Final = "await-hello"
_SERVER_AWAIT_PROOF: Final = "await-proof"
_SERVER_AWAIT_DECISION: Final = "await-decision"


class Route:
    """Messages from one sender to one target (None: to everyone) over one `Protocol`
    (`Protocol.route`). Sending along a route skips finding the pair, and its frames'
    route prefix is packed once. A route of a closed protocol refuses to send.

    ``send(obj) -> bool`` encodes `obj` with the protocol's codec and queues it, without
    waiting. It returns the protocol's `writing_paused`: True when the caller should
    wait before sending more. It raises `EncodeError` (`obj` cannot be encoded),
    `ConnectionClosed` (the connection is closed), `InvalidStateError` (the handshake is
    not complete) or `FrameSizeError` (the message alone is over what one frame can
    carry).
    """

    __slots__ = ("packed", "sender", "target", "send")

    def __init__(self, protocol: Protocol, sender: str, target: str | None) -> None:
        self.sender = sender
        self.target = target
        #: what follows a group's array header: kind, sender and target, packed
        self.packed = messages_route(sender, target)
        #: see the class docstring: a closure, which reads what it needs from its cells
        #: rather than from attributes (25 ns of ~490 a message, measured sans-I/O)
        self.send: Callable[[object], bool] = _route_sender(self, protocol)


def _route_sender(route: Route, p: Protocol) -> Callable[[object], bool]:
    plain, pack = p._plain, p._pack_body

    def send(obj: object) -> bool:
        # The hot path of every sender: a dataclass whose __dict__ is its fields, under
        # 256 bytes encoded, joining the open group of this route while it has room
        # (`_pending_cap`, below zero unless open). `Protocol._append` is the general
        # way (twin).
        spec = plain.get(type(obj))
        if spec is not None:
            fields = obj.__dict__
            if len(fields) == spec.size:
                try:
                    body = pack(fields)
                except Exception:
                    pass  # the general path below reports it as an EncodeError
                else:
                    length = len(body)
                    pending = p.bytes_pending + spec.tag_size + length + 2
                    if (
                        pending <= p._pending_cap
                        and p._group_route is route
                        and length < 256
                        and p._group_count < MAX_GROUP
                    ):
                        p._group += (spec.packed_tag, _BIN8[length], body)
                        p._group_count += 1
                        p.bytes_pending = pending
                        return p.writing_paused
                    if p.state is OPEN:
                        p._append(route, spec.packed_tag, body)
                        return p.writing_paused
        if p.state is not OPEN:
            raise p._not_open()
        packed_tag, body = p.codec.encode_packed(obj)
        p._append(route, packed_tag, body)
        return p.writing_paused

    return send


class Protocol:
    """One end of a Ceylon connection, without I/O.

    Feed it with `receive_data()`/`receive_eof()`; after every call collect
    `messages_received()` (application messages, as `MessageGroup`s, in order),
    `events_received()` (everything else; a `Closed` always comes after the messages
    that preceded it) and write out `data_to_send()`.

    Send application messages with `send_object()`, or, many to one target, along its
    `route()`. The I/O adapter sets `on_queued`, to hear when to take
    `data_to_send()`, and sets `writing_paused` while its own writes are held back.

    Args:
        side: `CLIENT` (sends Hello first) or `SERVER`.
        identity: who this end is.
        workspace: both ends must name the same one.
        secret: shared token; when set the peer must prove it knows it. A server may
            take a `handshake.Keyring` instead: each client proves one of its secrets,
            the one its Hello names by key id.
        max_frame_size: largest frame accepted or sent.
        codec: encodes message bodies (one per connection: it is stateful).
        limits: what decoding one received frame may cost (`transport.limits`).
        nonce_factory: source of fresh nonces (tests pass a fixed one).
    """

    def __init__(
        self,
        side: Side,
        identity: PeerInfo,
        *,
        workspace: str = "default",
        secret: bytes | handshake.Keyring | None = None,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        codec: Codec | None = None,
        limits: DecodeLimits = DEFAULT_LIMITS,
        nonce_factory: Callable[[], bytes] = handshake.new_nonce,
    ) -> None:
        self.side = side
        self.identity = identity
        self.workspace = workspace
        self.max_frame_size = max_frame_size
        self.state: State = HANDSHAKE
        self.peer: PeerInfo | None = None
        self.closed: Closed | None = None
        if isinstance(secret, bytes):
            secret = {handshake.key_id(secret): secret} if secret else None
        elif secret is not None and not secret:
            raise ValueError("an empty keyring would let nobody in: give at least one secret")
        elif secret is not None and side is CLIENT:
            raise TypeError("a client proves one secret: pass bytes, not a keyring")
        #: the secrets the peer may prove, by key id (a client has one)
        self._secrets = secret or None
        self._secret: bytes | None = None  # the one in use
        self._single = len(self._secrets or ()) == 1
        #: key id of the secret in use (on a server: the one the client proved)
        self.key = b""
        if side is CLIENT and self._secrets is not None:
            (self.key, self._secret), *_ = self._secrets.items()
        self._nonce_factory = nonce_factory
        self.codec = codec if codec is not None else Codec()
        self._plain = self.codec.registry.plain
        self._pack_body = self.codec.pack_body
        # Until the peer is known, frames are small: a stranger cannot make us buffer 8 MiB.
        self._decoder = FrameDecoder(min(max_frame_size, HANDSHAKE_MAX_FRAME_SIZE))
        self.limits = limits
        self._events: list[Event] = []
        self._messages: list[MessageGroup] = []
        self._out: list[bytes] = []
        # Plain attributes, not properties: the connection reads them on every message.
        #: bytes queued and not yet taken by `data_to_send()`
        self.bytes_pending = 0
        #: application messages queued and not yet taken by `data_to_send()`
        self.messages_pending = 0
        # The group of outgoing messages being built: one route, in order. The route
        # stays when the group is sealed: the next group is most often for it again.
        self._group: list[bytes] = []  # packed tags, bin headers, bodies, forwarded runs
        self._group_count = 0
        self._group_route: Route | None = None
        self._group_start = 0  # `bytes_pending` when the open group began
        #: called when application messages were queued and the queue was empty before,
        #: or holds `flush_bytes` or more: the I/O adapter's cue to write, or to plan to
        self.on_queued: Callable[[], None] | None = None
        #: see `on_queued`
        self.flush_bytes = max_frame_size
        self._cue_at = 1  # `bytes_pending` at which `on_queued` is called next
        # The most `bytes_pending` may reach before a message must take the general way
        # (`_append`): the group is full, or `on_queued` is due. Below zero unless the
        # connection is open, so that a closed one refuses. See `_recap`.
        self._pending_cap = -1
        #: set by the I/O adapter while it holds written bytes back (its socket's buffer
        #: is full): senders should wait (what `Route.send` returns)
        self.writing_paused = False
        # Room for the packed pairs of one group: a relay must be able to put a route
        # of its own in front of them (see `wire.ROUTE_ROOM`).
        self.max_group_bytes = max_frame_size - ROUTE_ROOM
        if self.max_group_bytes < 1024:
            raise ValueError(f"max_frame_size must be at least {ROUTE_ROOM + 1024} bytes")
        self._routes: dict[tuple[str, str | None], Route] = {}
        self._hello: Hello | None = None
        self._server_nonce = b""
        if side is CLIENT:
            self._step = _CLIENT_AWAIT_SERVER
            self._hello = Hello(
                PROTOCOL_VERSION,
                workspace,
                identity.id,
                identity.name,
                identity.role,
                identity.extra,
                nonce_factory(),
                self.key,
            )
            self._queue(encode_record(self._hello))
        else:
            self._step = _SERVER_AWAIT_HELLO

    # -- output -------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Take every byte queued for the peer."""
        if self._group:
            self._seal_group()
        if not self._out:
            return b""
        data = b"".join(self._out)
        self._out.clear()
        self.bytes_pending = self._group_start = 0
        self.messages_pending = 0
        self._cue_at = 1
        self._recap()
        return data

    def _recap(self) -> None:
        if self.state is not OPEN:
            self._pending_cap = -1
            return
        cap = self._group_start + self.max_group_bytes
        self._pending_cap = cap if cap < self._cue_at else self._cue_at - 1

    def events_received(self) -> list[Event]:
        """Take every event other than messages produced since the last call."""
        events = self._events
        self._events = []
        return events

    def messages_received(self) -> list[MessageGroup]:
        """Take every application message received since the last call, in order."""
        messages = self._messages
        self._messages = []
        return messages

    def has_received(self) -> bool:
        """Whether messages or events wait to be taken (cheaper than taking them)."""
        return bool(self._messages or self._events)

    def _queue(self, payload: bytes) -> None:
        if self._group:
            self._seal_group()  # control records keep their place among the messages
        frame = encode_frame(payload, self.max_frame_size)
        self._out.append(frame)
        self.bytes_pending += len(frame)
        self._group_start = self.bytes_pending
        self._recap()

    def _seal_group(self) -> None:
        """Frame the open group; a new one begins (the caller then calls `_recap`)."""
        route = self._group_route
        assert route is not None
        count = self._group_count
        header = _HEADERS[count] if count <= MAX_GROUP else messages_header(count)
        prefix = header + route.packed
        size = len(prefix) + self.bytes_pending - self._group_start
        self._out.append(size.to_bytes(HEADER_SIZE, "big") + prefix)
        self._out.append(b"".join(self._group))
        self.bytes_pending += HEADER_SIZE + len(prefix)
        self._group_start = self.bytes_pending
        self.messages_pending += count
        self._group = []
        self._group_count = 0

    # -- sending ------------------------------------------------------------------

    def route(self, sender: str, target: str | None) -> Route:
        """The `Route` of messages from `sender` to `target` (None: to everyone)."""
        key = (sender, target)
        route = self._routes.get(key)
        if route is None:
            if len(self._routes) >= 4096:  # peers come and go; keep the cache bounded
                self._routes.clear()
            route = self._routes[key] = Route(self, sender, target)
        return route

    def send_message(self, sender: str, target: str | None, tag: str, body: bytes) -> None:
        """Queue an application message whose body is already encoded.

        Consecutive messages of one sender and target share a frame (see `wire`).

        Raises:
            ConnectionClosed: the connection is closed.
            InvalidStateError: the handshake is not complete.
            FrameSizeError: the message alone is over what one frame can carry.
        """
        if self.state is not OPEN:
            raise self._not_open()
        self._append(self.route(sender, target), self.codec.tag_bytes(tag), body)

    def forward(self, sender: str, target: str | None, count: int, packed: bytes) -> None:
        """Queue `count` messages exactly as another connection received them.

        `packed` is a `MessageGroup.tail()`: packed tags and bodies, forwarded without
        being decoded, behind the route given here.

        Raises:
            The errors of `send_message`.
        """
        if self.state is not OPEN:
            raise self._not_open()
        self._add(self.route(sender, target), (packed,), len(packed), count)

    def send_object(self, obj: object, sender: str = "", target: str | None = None) -> bool:
        """Encode `obj` with the codec and queue it (see `send_message`); what
        `Route.send` does, for a route looked up here.

        Returns:
            `writing_paused`.

        Raises:
            EncodeError: `obj` cannot be encoded; plus those of `send_message`.
        """
        return self.route(sender, target).send(obj)

    def _append(self, route: Route, packed_tag: bytes, body: bytes) -> None:
        length = len(body)
        header = _BIN8[length] if length < 256 else bin_header(length)
        self._add(route, (packed_tag, header, body), len(packed_tag) + len(header) + length, 1)

    def _add(self, route: Route, parts: tuple[bytes, ...], size: int, count: int) -> None:
        """Put `count` messages along `route`, packed in `parts` (`size` bytes), into
        the open group, or into a new one if they cannot join it; cue the adapter."""
        if self._group and (
            route is not self._group_route
            or self.bytes_pending - self._group_start + size > self.max_group_bytes
            or self._group_count + count > MAX_GROUP
        ):
            self._seal_group()
            self._recap()
        if not self._group:
            if size > self.max_group_bytes:
                raise FrameSizeError(size + ROUTE_ROOM, self.max_frame_size)
            self._group_route = route
        self._group += parts
        self._group_count += count
        self.bytes_pending += size
        if self.bytes_pending >= self._cue_at:
            # Before the call: `on_queued` may take the bytes, which lowers the mark.
            self._cue_at = self.flush_bytes
            self._recap()
            if self.on_queued is not None:
                self.on_queued()

    def send_ping(self, seq: int) -> None:
        """Queue a heartbeat; the peer answers with a Pong carrying `seq`."""
        if self.state is not OPEN:
            raise self._not_open()
        self._queue(encode_record(Ping(seq)))

    def send_dropped(self, count: int) -> None:
        """Tell the peer that `count` messages meant for it were dropped (a relay)."""
        if self.state is not OPEN:
            raise self._not_open()
        self._queue(encode_record(Dropped(count)))

    def _not_open(self) -> Exception:
        if self.closed is not None:
            return self.closed.exception()
        return InvalidStateError(f"connection is not open (state {self.state.name})")

    def accept(self, identity: PeerInfo | None = None) -> None:
        """Server side: welcome an authenticated client (after `PeerAuthenticated`).

        Raises:
            InvalidStateError: no client is waiting for a decision.
        """
        if self.state is not HANDSHAKE or self._step != _SERVER_AWAIT_DECISION:
            raise InvalidStateError("accept() without an authenticated client waiting")
        if identity is not None:
            self.identity = identity
        me = self.identity
        self._queue(encode_record(Welcome(me.id, me.name, me.role, me.extra)))
        self._open()
        assert self.peer is not None
        self._events.append(HandshakeComplete(self.peer))

    def _open(self) -> None:
        self.state = OPEN
        self._decoder.max_frame_size = self.max_frame_size
        self._recap()

    def reject(self, reason: str) -> None:
        """Server side: refuse the client with a reason it will be shown."""
        if self.state is not HANDSHAKE or self.side is not SERVER:
            raise InvalidStateError("reject() outside a server handshake")
        self._queue(encode_record(Reject(reason)))
        self._close(reason, by_peer=False, error=HandshakeError(reason))

    def close(self, reason: str = "closed") -> None:
        """Queue a Goodbye and close. Idempotent."""
        if self.state is CLOSED:
            return
        self._queue(encode_record(Goodbye(reason)))
        self._close(reason, by_peer=False, error=None)

    def fail(self, reason: str, error: Exception | None = None) -> None:
        """Close abnormally (heartbeat timeout, buffer overflow), telling the peer why."""
        if self.state is CLOSED:
            return
        self._queue(encode_record(Goodbye(reason)))
        error = error or ConnectionClosedError(reason, by_peer=False)
        self._close(reason, by_peer=False, error=error)

    def _close(self, reason: str, *, by_peer: bool, error: Exception | None) -> None:
        self.state = CLOSED
        self._recap()
        self._routes = {}  # they refuse to send from now on; no cycle keeps this alive
        self.closed = Closed(reason, by_peer, error)
        self._events.append(self.closed)

    # -- receiving ----------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes read from the peer. Never raises on what the peer sent."""
        if self.state is CLOSED:
            return
        try:
            payloads = self._decoder.feed_frames(data)
        except ProtocolError as exc:
            self._protocol_error(str(exc), exc)
            return
        if self.state is HANDSHAKE:
            self._receive_handshake(payloads)
        else:
            self._receive_open(payloads)

    def _receive_handshake(self, payloads: list[bytes]) -> None:
        # Plain msgpack, extensions refused: a stranger's bytes construct no app types.
        for i, payload in enumerate(payloads):
            try:
                item = unpack(payload, self.limits)
            except DecodeError as exc:
                self._bad_handshake_frame(DecodeError(None, f"undecodable frame: {exc.reason}"))
                return
            try:
                record = record_from_item(item)
            except DecodeError as exc:
                self._bad_handshake_frame(exc, item)
                return
            self._handle(record)
            if self.closed is not None:
                return
            if self.state is OPEN:  # frames after the Welcome may be larger: read on
                try:
                    rest = payloads[i + 1 :] + self._decoder.frames()
                except ProtocolError as exc:
                    self._protocol_error(str(exc), exc)
                    return
                self._receive_open(rest)
                return

    def _receive_open(self, payloads: list[bytes]) -> None:
        # Message groups are not decoded here: only their route prefix is read, and
        # the consumer decodes what it needs (a relay nothing at all).
        messages = self._messages
        events = self._events
        limit = self.max_group_bytes
        for payload in payloads:
            try:
                prefix = parse_group_prefix(payload)
            except DecodeError as exc:
                events.append(FrameDropped(exc))
                continue
            if prefix is not None:
                count, sender, target, offset = prefix
                packed = len(payload) - offset
                if packed > limit:
                    reason = f"message group of {packed} bytes, limit {limit}"
                    events.append(FrameDropped(DecodeError(None, reason)))
                elif count > packed // 3:  # each message takes 3 bytes at least
                    reason = f"message group announces {count} messages in {packed} bytes"
                    events.append(FrameDropped(DecodeError(None, reason)))
                else:
                    messages.append(MessageGroup(sender, target, count, payload, offset))
                continue
            try:
                record = record_from_item(unpack(payload, self.limits))
            except DecodeError as exc:
                events.append(FrameDropped(exc))
                continue
            self._handle(record)
            if self.closed is not None:  # (not `state`: mypy keeps it narrowed)
                return

    def _bad_handshake_frame(self, error: DecodeError, item: Any = None) -> None:
        """Refuse the handshake, naming a version mismatch when that is the cause."""
        version = peek_version(item) if self._step == _SERVER_AWAIT_HELLO else None
        if version is not None and version != PROTOCOL_VERSION:
            self._refuse(VersionMismatchError(PROTOCOL_VERSION, version))
        else:
            self._refuse(HandshakeError(f"bad handshake frame: {error}"))

    def receive_eof(self) -> None:
        """The peer closed its sending side. Never raises."""
        if self.state is CLOSED:
            return
        try:
            self._decoder.feed_eof()
        except ProtocolError as exc:
            self._close(str(exc), by_peer=True, error=exc)
            return
        if self.state is HANDSHAKE:
            reason = "connection closed during the handshake"
            self._close(reason, by_peer=True, error=HandshakeError(reason))
        else:
            reason = "connection closed without a goodbye"
            self._close(reason, by_peer=True, error=ConnectionClosedError(reason, by_peer=True))

    def _protocol_error(self, reason: str, error: Exception) -> None:
        self._queue(encode_record(Goodbye(f"protocol error: {reason}")))
        if self.state is HANDSHAKE:  # openers expect a HandshakeError, whatever the cause
            handshake_error = HandshakeError(f"protocol error in the handshake: {reason}")
            handshake_error.__cause__ = error
            error = handshake_error
        self._close(reason, by_peer=True, error=error)

    def _refuse(self, error: HandshakeError) -> None:
        """Refuse the handshake on this side's initiative, telling the peer why."""
        if self.side is SERVER:
            self._queue(encode_record(Reject(error.reason)))
        else:
            self._queue(encode_record(Goodbye(error.reason)))
        self._close(error.reason, by_peer=False, error=error)

    def _handle(self, record: Record) -> None:
        kind = type(record)
        if kind is Goodbye:
            assert isinstance(record, Goodbye)
            error = None if self.state is OPEN else HandshakeError(record.reason)
            self._close(record.reason, by_peer=True, error=error)
        elif self.state is OPEN:
            if kind is Ping:
                assert isinstance(record, Ping)
                self._queue(encode_record(Pong(record.seq)))
            elif kind is Pong:
                assert isinstance(record, Pong)
                self._events.append(PongReceived(record.seq))
            elif kind is Dropped:
                assert isinstance(record, Dropped)
                self._events.append(MessagesDropped(record.messages))
            else:
                self._protocol_error(
                    f"unexpected {kind.__name__} on an open connection",
                    ProtocolError(f"unexpected {kind.__name__}"),
                )
        elif self.side is SERVER:
            self._server_handshake(record)
        else:
            self._client_handshake(record)

    def _server_handshake(self, record: Record) -> None:
        if self._step == _SERVER_AWAIT_HELLO and type(record) is Hello:
            try:
                handshake.check_hello(record, self.workspace)
            except HandshakeError as exc:
                self._refuse(exc)
                return
            self._hello = record
            self.peer = PeerInfo(record.id, record.name, record.role, record.extra)
            if self._secrets is None:
                self._authenticated()
                return
            if self._single:  # one token: whatever key id the client names
                (self.key, self._secret), *_ = self._secrets.items()
            else:
                self._secret = self._secrets.get(record.key)
                if self._secret is None:
                    self._refuse(AuthenticationError("authentication failed: unknown token"))
                    return
                self.key = record.key
            self._server_nonce = self._nonce_factory()
            proof = handshake.server_proof(self._secret, record, self._server_nonce)
            self._queue(encode_record(Challenge(self._server_nonce, proof)))
            self._step = _SERVER_AWAIT_PROOF
        elif self._step == _SERVER_AWAIT_PROOF and type(record) is Proof:
            assert self._secret is not None and self._hello is not None
            expected = handshake.client_proof(self._secret, self._hello, self._server_nonce)
            try:
                handshake.verify(expected, record.proof, "client")
            except AuthenticationError as exc:
                self._refuse(exc)
                return
            self._authenticated()
        else:
            self._refuse(HandshakeError(f"unexpected {type(record).__name__} in the handshake"))

    def _authenticated(self) -> None:
        assert self.peer is not None
        self._step = _SERVER_AWAIT_DECISION
        self._events.append(PeerAuthenticated(self.peer, self.key))

    def _client_handshake(self, record: Record) -> None:
        kind = type(record)
        if kind is Reject:
            assert isinstance(record, Reject)
            self._close(record.reason, by_peer=True, error=HandshakeError(record.reason))
        elif self._step == _CLIENT_AWAIT_SERVER and kind is Challenge:
            assert isinstance(record, Challenge) and self._hello is not None
            if self._secret is None:
                self._refuse(
                    AuthenticationError(
                        "authentication failed: the server requires a token and none is set"
                    )
                )
                return
            expected = handshake.server_proof(self._secret, self._hello, record.nonce)
            try:
                handshake.verify(expected, record.proof, "server")
            except AuthenticationError as exc:
                self._refuse(exc)
                return
            proof = handshake.client_proof(self._secret, self._hello, record.nonce)
            self._queue(encode_record(Proof(proof)))
            self._step = _CLIENT_AWAIT_WELCOME
        elif kind is Welcome and (self._step == _CLIENT_AWAIT_WELCOME or self._secret is None):
            assert isinstance(record, Welcome)
            self.peer = PeerInfo(record.id, record.name, record.role, record.extra)
            self._open()
            self._events.append(HandshakeComplete(self.peer))
        elif kind is Welcome:
            self._refuse(
                AuthenticationError(
                    "authentication failed: a token is set but the server did not prove it knows it"
                )
            )
        else:
            self._refuse(HandshakeError(f"unexpected {kind.__name__} in the handshake"))
