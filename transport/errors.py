"""Every exception the transport raises.

The tree::

    TransportError
    ├── ProtocolError                  the peer broke the protocol (remote fault)
    │   ├── FrameSizeError             declared length over the limit      (.size, .limit)
    │   ├── IncompleteFrameError       EOF inside a frame                  (.received, .expected)
    │   └── DecodeError                not msgpack, wrong shape or fields  (.tag, .reason)
    │       └── UnknownTypeError       tag not registered here             (.tag)
    ├── HandshakeError                 handshake refused                   (.reason)
    │   ├── VersionMismatchError       (.local, .remote)
    │   ├── WorkspaceMismatchError     (.local, .remote)
    │   └── AuthenticationError
    ├── EncodeError                    an object the codec cannot encode (also TypeError)
    ├── TagConflictError               two types claim one tag (also ValueError)
    ├── ConnectionClosed               operation on a closed connection    (.reason, .by_peer)
    │   ├── ConnectionClosedOK         orderly goodbye
    │   └── ConnectionClosedError      reset, heartbeat timeout, protocol error, buffer overflow
    └── InvalidStateError              API misuse, e.g. send before handshake (also RuntimeError)

A `ProtocolError` or `HandshakeError` describes something the *peer* did: it costs at
most that frame or that connection. `EncodeError`, `TagConflictError` and
`InvalidStateError` describe a bug on *this* side.
"""

from __future__ import annotations

__all__ = [
    "TransportError",
    "ProtocolError",
    "FrameSizeError",
    "IncompleteFrameError",
    "DecodeError",
    "UnknownTypeError",
    "HandshakeError",
    "VersionMismatchError",
    "WorkspaceMismatchError",
    "AuthenticationError",
    "EncodeError",
    "TagConflictError",
    "ConnectionClosed",
    "ConnectionClosedOK",
    "ConnectionClosedError",
    "InvalidStateError",
]


class TransportError(Exception):
    """Root of every exception raised by `transport`."""


class ProtocolError(TransportError):
    """The peer sent something the protocol does not allow."""


class FrameSizeError(ProtocolError):
    """A frame header declared a length above the configured maximum."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"frame of {size} bytes declared, expected no more than {limit}")


class IncompleteFrameError(ProtocolError):
    """The stream ended inside a frame."""

    def __init__(self, received: int, expected: int) -> None:
        self.received = received
        self.expected = expected
        super().__init__(f"stream ended after {received} bytes of a frame, expected {expected}")


class DecodeError(ProtocolError):
    """A frame's payload is not msgpack, or not the shape its tag requires."""

    def __init__(self, tag: str | None, reason: str) -> None:
        self.tag = tag
        self.reason = reason
        where = f"type {tag!r}" if tag else "payload"
        super().__init__(f"cannot decode {where}: {reason}")


class UnknownTypeError(DecodeError):
    """A payload names a type tag that is not registered in this process."""

    def __init__(self, tag: str) -> None:
        super().__init__(tag, "tag is not registered in this process")


class HandshakeError(TransportError):
    """The handshake was refused, by this side or by the peer."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class VersionMismatchError(HandshakeError):
    """The two sides speak different protocol versions."""

    def __init__(self, local: int, remote: object) -> None:
        self.local = local
        self.remote = remote
        super().__init__(f"protocol version {remote!r} is not supported, this peer speaks {local}")


class WorkspaceMismatchError(HandshakeError):
    """The peer belongs to another workspace."""

    def __init__(self, local: str, remote: str) -> None:
        self.local = local
        self.remote = remote
        super().__init__(f"workspace {remote!r} does not match this workspace {local!r}")


class AuthenticationError(HandshakeError):
    """The shared-secret proof was missing or wrong."""


class EncodeError(TransportError, TypeError):
    """This side asked to send an object the codec cannot encode."""


class TagConflictError(TransportError, ValueError):
    """Two different types were registered under the same tag."""

    def __init__(self, tag: str, existing: type, new: type) -> None:
        self.tag = tag
        self.existing = existing
        self.new = new
        super().__init__(
            f"tag {tag!r} is already taken by {existing.__module__}.{existing.__qualname__}; "
            f"register {new.__module__}.{new.__qualname__} with an explicit tag"
        )


class ConnectionClosed(TransportError):
    """The connection is closed; `reason` says why and `by_peer` who closed it."""

    def __init__(self, reason: str, *, by_peer: bool) -> None:
        self.reason = reason
        self.by_peer = by_peer
        who = "peer" if by_peer else "this side"
        super().__init__(f"connection closed by {who}: {reason}")


class ConnectionClosedOK(ConnectionClosed):
    """The connection ended with an orderly goodbye."""


class ConnectionClosedError(ConnectionClosed):
    """The connection ended abnormally (reset, timeout, protocol error, overflow)."""


class InvalidStateError(TransportError, RuntimeError):
    """An operation was attempted in a state that does not allow it."""
