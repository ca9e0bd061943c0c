"""Ceylon's wire: framing, codec, handshake and connections over TCP/TLS.

The sans-I/O core (`framing`, `codec`, `wire`, `handshake`, `protocol`) does no I/O
and reads no clock; `connection`, `server` and `client` adapt it to asyncio.
"""

from __future__ import annotations

from loguru import logger

from .client import connect, make_identity, secret_from_token
from .codec import PLAIN_TAG, Codec, TypeRegistry, TypeSpec, default_registry
from .connection import (
    Authorizer,
    CongestionCallback,
    Connection,
    ConnectionOptions,
    GroupCallback,
    MessageCallback,
)
from .errors import (
    AuthenticationError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    DecodeError,
    EncodeError,
    FrameSizeError,
    HandshakeError,
    IncompleteFrameError,
    InvalidStateError,
    ProtocolError,
    TagConflictError,
    TransportError,
    UnknownTypeError,
    VersionMismatchError,
    WorkspaceMismatchError,
)
from .framing import DEFAULT_MAX_FRAME_SIZE, FrameDecoder, encode_frame, encode_frames
from .limits import DEFAULT_LIMITS, DecodeLimits
from .loop import loop_factory, loop_name, run
from .protocol import (
    Closed,
    FrameDropped,
    HandshakeComplete,
    MessagesDropped,
    PeerAuthenticated,
    PongReceived,
    Protocol,
    Side,
    State,
)
from .router import LocalCallback, Router, RouterOptions, SlowConsumerPolicy
from .server import Handler, Server, raise_descriptor_limit, serve
from .tls import client_context, server_context
from .wire import PROTOCOL_VERSION, Envelope, MessageGroup, PeerInfo, decode_record, encode_record

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_MAX_FRAME_SIZE",
    "PLAIN_TAG",
    "PROTOCOL_VERSION",
    "AuthenticationError",
    "Authorizer",
    "Closed",
    "Codec",
    "CongestionCallback",
    "Connection",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "ConnectionOptions",
    "DecodeError",
    "DecodeLimits",
    "EncodeError",
    "Envelope",
    "FrameDecoder",
    "FrameDropped",
    "FrameSizeError",
    "GroupCallback",
    "Handler",
    "HandshakeComplete",
    "HandshakeError",
    "IncompleteFrameError",
    "InvalidStateError",
    "LocalCallback",
    "MessageCallback",
    "MessageGroup",
    "MessagesDropped",
    "PeerAuthenticated",
    "PeerInfo",
    "PongReceived",
    "Protocol",
    "ProtocolError",
    "Router",
    "RouterOptions",
    "Server",
    "Side",
    "SlowConsumerPolicy",
    "State",
    "TagConflictError",
    "TransportError",
    "TypeRegistry",
    "TypeSpec",
    "UnknownTypeError",
    "VersionMismatchError",
    "WorkspaceMismatchError",
    "client_context",
    "connect",
    "decode_record",
    "default_registry",
    "encode_frame",
    "encode_frames",
    "encode_record",
    "loop_factory",
    "loop_name",
    "make_identity",
    "run",
    "secret_from_token",
    "raise_descriptor_limit",
    "serve",
    "server_context",
]

# A library leaves the choice of logging to the application (loguru's convention).
logger.disable("transport")
