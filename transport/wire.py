"""The protocol's own records and their msgpack encoding, sans-I/O.

Every frame carries one msgpack array ``[kind, *fields]``. Control records (Hello,
Challenge, Proof, Welcome, Reject, Ping, Pong, Goodbye) have fixed fields. Kind 0 carries
application messages: ``[0, sender, target, tag1, body1, tag2, body2, ...]``, one or more
messages of the same sender and target, each a type tag and its body inline. Grouping
the messages queued in one loop iteration costs the receiver one msgpack call per frame
instead of one per message; per-pair order is unchanged. Each message is surfaced as an
`Envelope`.

Records are `NamedTuple`s rather than frozen dataclasses: they are just as immutable
and typed, and building one per received message is several times cheaper.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import Any, Final, NamedTuple

import msgpack

from .codec import find_unresolved
from .errors import DecodeError

__all__ = [
    "PROTOCOL_VERSION",
    "Challenge",
    "Envelope",
    "Goodbye",
    "Hello",
    "MessageGroup",
    "PeerInfo",
    "Ping",
    "Pong",
    "Proof",
    "Record",
    "Reject",
    "Welcome",
    "decode_record",
    "encode_record",
]

PROTOCOL_VERSION: Final = 1


class PeerInfo(NamedTuple):
    """Who a peer says it is (and, once authenticated, who it is)."""

    id: str
    name: str
    role: str
    extra: dict[str, Any]


class Hello(NamedTuple):
    """First frame of a client: who it is, where it wants in, and its nonce."""

    version: int
    workspace: str
    id: str
    name: str
    role: str
    extra: dict[str, Any]
    nonce: bytes


class Challenge(NamedTuple):
    """Server's nonce, and the server's own proof that it knows the secret."""

    nonce: bytes
    proof: bytes


class Proof(NamedTuple):
    """Client's HMAC over the handshake transcript."""

    proof: bytes


class Welcome(NamedTuple):
    """The server accepted the client; carries the server's identity."""

    id: str
    name: str
    role: str
    extra: dict[str, Any]


class Reject(NamedTuple):
    """The server refused the handshake."""

    reason: str


class Ping(NamedTuple):
    seq: int


class Pong(NamedTuple):
    seq: int


class Envelope(NamedTuple):
    """One application message.

    `target` None means broadcast. `body` is the unpacked msgpack value of the message
    (the fields map of a dataclass); `Codec.build(tag, body)` turns it into the object.
    `unresolved` names a nested type this process could not build (see
    `codec.UnresolvedExt`): a relay may forward such a message, an endpoint refuses it.
    """

    sender: str
    target: str | None
    tag: str
    body: Any
    unresolved: str | None = None


class MessageGroup(NamedTuple):
    """Consecutive messages of one sender to one target, as one frame brought them.

    `items` is the unpacked frame, ``[0, sender, target, tag1, body1, tag2, body2, ...]``,
    kept as is so that receiving costs nothing per message until the consumer looks.
    `unresolved` is set when some body holds a type this process could not build.
    """

    sender: str
    target: str | None
    items: list[Any]
    unresolved: str | None = None

    @property
    def size(self) -> int:
        """How many messages the group holds."""
        return (len(self.items) - 3) >> 1

    def pairs(self, start: int = 0) -> Iterator[tuple[str, Any]]:
        """``(tag, body)`` of each message from the `start`-th on, in order."""
        items = self.items
        first = 3 + 2 * start
        return zip(islice(items, first, None, 2), islice(items, first + 1, None, 2), strict=True)

    def envelopes(self, start: int = 0, stop: int | None = None) -> list[Envelope]:
        """The messages from `start` to `stop` as `Envelope`s."""
        sender, target, items, unresolved = self
        end = len(items) if stop is None else 3 + 2 * stop
        if unresolved is None:
            return [
                Envelope(sender, target, items[i], items[i + 1])
                for i in range(3 + 2 * start, end, 2)
            ]
        return [
            Envelope(sender, target, items[i], items[i + 1], find_unresolved(items[i + 1]))
            for i in range(3 + 2 * start, end, 2)
        ]


class Goodbye(NamedTuple):
    """Orderly close, with the reason."""

    reason: str


Record = Hello | Challenge | Proof | Welcome | Reject | Ping | Pong | Goodbye

KIND_MESSAGES: Final = 0
KIND_HELLO: Final = 1

_NONE = type(None)
_INT = (int,)
_STR = (str,)
_BYTES = (bytes,)
_DICT = (dict,)

# kind -> (record class, allowed types per field). The kind numbers are the wire format.
_SCHEMA: Final[dict[int, tuple[type[Any], tuple[tuple[type, ...], ...]]]] = {
    1: (Hello, (_INT, _STR, _STR, _STR, _STR, _DICT, _BYTES)),
    2: (Challenge, (_BYTES, _BYTES)),
    3: (Proof, (_BYTES,)),
    4: (Welcome, (_STR, _STR, _STR, _DICT)),
    5: (Reject, (_STR,)),
    6: (Ping, (_INT,)),
    7: (Pong, (_INT,)),
    8: (Goodbye, (_STR,)),
}
_KIND_OF: Final[dict[type[Any], int]] = {cls: kind for kind, (cls, _) in _SCHEMA.items()}

# Control records hold only plain msgpack values, so packing them never calls back into
# Python: one shared packer is safe even with several event loops in several threads.
_pack = msgpack.Packer(use_bin_type=True).pack


def encode_record(record: Record) -> bytes:
    """Encode a control record as a frame payload (without the length prefix)."""
    return _pack([_KIND_OF[type(record)], *record])  # type: ignore[no-any-return]


def messages_prefix(sender: str, target: str | None, count: int) -> bytes:
    """The start of a kind-0 payload; `count` pairs of packed tag and body follow it."""
    return messages_header(count) + messages_route(sender, target)


def messages_header(count: int) -> bytes:
    """The array header of a kind-0 payload holding `count` messages."""
    return _pack_array_header(3 + 2 * count)  # type: ignore[no-any-return]


def messages_route(sender: str, target: str | None) -> bytes:
    """What follows the array header in a kind-0 payload: kind, sender and target."""
    return b"\x00" + _pack(sender) + _pack(target)  # type: ignore[no-any-return]


_pack_array_header = msgpack.Packer().pack_array_header


def record_from_item(item: Any) -> Record:
    """Validate an unpacked control record.

    Raises:
        DecodeError: not a record, unknown kind, or a field of the wrong type.
    """
    if type(item) is not list or not item or type(item[0]) is not int:
        raise DecodeError(None, "frame is not a [kind, ...] record")
    kind = item[0]
    entry = _SCHEMA.get(kind)
    if entry is None:
        raise DecodeError(None, f"unknown record kind {kind}")
    cls, types = entry
    fields = item[1:]
    if len(fields) != len(types):
        raise DecodeError(cls.__name__, f"{len(fields)} fields, expected {len(types)}")
    for name, value, allowed in zip(cls._fields, fields, types, strict=True):
        if type(value) not in allowed:
            expected = " or ".join(t.__name__ for t in allowed)
            raise DecodeError(
                cls.__name__, f"field {name!r} is {type(value).__name__}, expected {expected}"
            )
    record: Record = cls(*fields)
    return record


def decode_record(payload: bytes) -> Record:
    """Decode one control-record payload.

    Raises:
        DecodeError: not msgpack, not a control record, or a field of the wrong type.
    """
    try:
        item = msgpack.unpackb(payload, strict_map_key=False)
    except Exception as exc:  # msgpack reports malformed input with several types
        raise DecodeError(None, f"frame is not msgpack: {type(exc).__name__}: {exc}") from None
    return record_from_item(item)


def peek_version(item: Any) -> object:
    """The protocol version an unpacked Hello claims, before its other fields are checked.

    Lets a server name a version mismatch even when a newer Hello has another shape.
    Returns None when `item` is not a Hello at all.
    """
    if type(item) is list and len(item) >= 2 and item[0] == KIND_HELLO:
        return item[1]
    return None
