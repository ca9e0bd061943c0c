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
from typing import Final, NamedTuple

from . import handshake
from .errors import (
    AuthenticationError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    DecodeError,
    HandshakeError,
    InvalidStateError,
    ProtocolError,
    VersionMismatchError,
)
from .framing import DEFAULT_MAX_FRAME_SIZE, FrameDecoder, encode_frame
from .wire import (
    PROTOCOL_VERSION,
    Challenge,
    Envelope,
    Goodbye,
    Hello,
    PeerInfo,
    Ping,
    Pong,
    Proof,
    Record,
    Reject,
    Welcome,
    decode_record,
    encode_envelope,
    encode_record,
    peek_version,
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
    "PeerAuthenticated",
    "PongReceived",
    "Protocol",
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

    The owner decides: `Protocol.accept()` or `Protocol.reject(reason)`.
    """

    peer: PeerInfo


class HandshakeComplete(NamedTuple):
    """The connection is open; `peer` is the other side's identity."""

    peer: PeerInfo


class PongReceived(NamedTuple):
    seq: int


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


Event = Envelope | PeerAuthenticated | HandshakeComplete | PongReceived | FrameDropped | Closed

_CLIENT_AWAIT_SERVER: Final = "await-challenge-or-welcome"
_CLIENT_AWAIT_WELCOME: Final = "await-welcome"
_SERVER_AWAIT_HELLO: Final = "await-hello"
_SERVER_AWAIT_PROOF: Final = "await-proof"
_SERVER_AWAIT_DECISION: Final = "await-decision"


class Protocol:
    """One end of a Ceylon connection, without I/O.

    Feed it with `receive_data()`/`receive_eof()`; collect `events_received()` and
    write out `data_to_send()` after every call.

    Args:
        side: `CLIENT` (sends Hello first) or `SERVER`.
        identity: who this end is.
        workspace: both ends must name the same one.
        secret: shared token; when set the peer must prove it knows it.
        max_frame_size: largest frame accepted or sent.
        nonce_factory: source of fresh nonces (tests pass a fixed one).
    """

    def __init__(
        self,
        side: Side,
        identity: PeerInfo,
        *,
        workspace: str = "default",
        secret: bytes | None = None,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        nonce_factory: Callable[[], bytes] = handshake.new_nonce,
    ) -> None:
        self.side = side
        self.identity = identity
        self.workspace = workspace
        self.max_frame_size = max_frame_size
        self.state: State = HANDSHAKE
        self.peer: PeerInfo | None = None
        self.closed: Closed | None = None
        self._secret = secret or None
        self._nonce_factory = nonce_factory
        self._decoder = FrameDecoder(max_frame_size)
        self._events: list[Event] = []
        self._out: list[bytes] = []
        self._pending = 0
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
            )
            self._queue(encode_record(self._hello))
        else:
            self._step = _SERVER_AWAIT_HELLO

    # -- output -------------------------------------------------------------------

    @property
    def bytes_pending(self) -> int:
        """Bytes queued and not yet taken by `data_to_send()`."""
        return self._pending

    def data_to_send(self) -> bytes:
        """Take every byte queued for the peer."""
        if not self._out:
            return b""
        data = b"".join(self._out)
        self._out.clear()
        self._pending = 0
        return data

    def events_received(self) -> list[Event]:
        """Take every event produced since the last call."""
        events = self._events
        self._events = []
        return events

    def _queue(self, payload: bytes) -> None:
        frame = encode_frame(payload, self.max_frame_size)
        self._out.append(frame)
        self._pending += len(frame)

    # -- sending ------------------------------------------------------------------

    def send_envelope(self, sender: str, target: str | None, tag: str, body: bytes) -> None:
        """Queue an application message.

        Raises:
            InvalidStateError: the connection is not open.
            FrameSizeError: the encoded message is over `max_frame_size`.
        """
        if self.state is not OPEN:
            raise self._not_open()
        self._queue(encode_envelope(sender, target, tag, body))

    def send_frame(self, frame: bytes) -> None:
        """Queue an already framed record, e.g. one envelope fanned out to many peers."""
        if self.state is not OPEN:
            raise self._not_open()
        self._out.append(frame)
        self._pending += len(frame)

    def send_ping(self, seq: int) -> None:
        """Queue a heartbeat; the peer answers with a Pong carrying `seq`."""
        if self.state is not OPEN:
            raise self._not_open()
        self._queue(encode_record(Ping(seq)))

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
        self.state = OPEN
        assert self.peer is not None
        self._events.append(HandshakeComplete(self.peer))

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
        self.closed = Closed(reason, by_peer, error)
        self._events.append(self.closed)

    # -- receiving ----------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes read from the peer. Never raises on what the peer sent."""
        if self.state is CLOSED:
            return
        decoder = self._decoder
        decoder.feed(data)
        try:
            payloads = decoder.frames()
        except ProtocolError as exc:
            self._protocol_error(str(exc), exc)
            return
        events = self._events
        for payload in payloads:
            try:
                record = decode_record(payload)
            except DecodeError as exc:
                if self.state is OPEN:
                    events.append(FrameDropped(exc))
                    continue
                self._handshake_bad_frame(payload, exc)
                return
            if type(record) is Envelope and self.state is OPEN:
                events.append(record)
                continue
            self._handle(record)
            if self.closed is not None:  # (not `state`: mypy keeps it narrowed)
                return

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
        self._close(reason, by_peer=True, error=error)

    def _handshake_bad_frame(self, payload: bytes, exc: DecodeError) -> None:
        version = peek_version(payload) if self._step == _SERVER_AWAIT_HELLO else None
        if version is not None and version != PROTOCOL_VERSION:
            self._refuse(VersionMismatchError(PROTOCOL_VERSION, version))
        else:
            self._refuse(HandshakeError(f"bad handshake frame: {exc}"))

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
            else:
                self._protocol_error(f"unexpected {kind.__name__} on an open connection",
                                     ProtocolError(f"unexpected {kind.__name__}"))
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
            if self._secret is None:
                self._authenticated()
                return
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
        self._events.append(PeerAuthenticated(self.peer))

    def _client_handshake(self, record: Record) -> None:
        kind = type(record)
        if kind is Reject:
            assert isinstance(record, Reject)
            self._close(record.reason, by_peer=True, error=HandshakeError(record.reason))
        elif self._step == _CLIENT_AWAIT_SERVER and kind is Challenge:
            assert isinstance(record, Challenge) and self._hello is not None
            if self._secret is None:
                self._refuse(AuthenticationError(
                    "authentication failed: the server requires a token and none is set"))
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
            self.state = OPEN
            self._events.append(HandshakeComplete(self.peer))
        elif kind is Welcome:
            self._refuse(AuthenticationError(
                "authentication failed: a token is set but the server did not prove it knows it"))
        else:
            self._refuse(HandshakeError(f"unexpected {kind.__name__} in the handshake"))
