"""The protocol's own records and their msgpack encoding, sans-I/O.

Every frame carries one msgpack array ``[kind, *fields]``. Control records (Hello,
Challenge, Proof, Welcome, Reject, Ping, Pong, Goodbye, Dropped) have fixed fields.
Kind 0 carries application messages (wire v2)::

    [0, sender, target, tag1, body1, tag2, body2, ...]

one or more messages of the same sender and target; each tag is a string and each
body a msgpack ``bin`` holding the message's own encoding, opaque to the transport.
The route prefix (array header, kind, sender, target) comes first, so a relay reads
only it (`parse_group_prefix`) and forwards the rest, the same bytes, to every target
behind a prefix of its own; `ROUTE_ROOM` bytes of every frame are kept free for that
prefix, so a frame legal on arrival is never too big to forward.

Records are `NamedTuple`s rather than frozen dataclasses: they are just as immutable
and typed, and building one is several times cheaper.
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

import msgpack

from .errors import DecodeError
from .limits import DEFAULT_LIMITS, DecodeLimits, unpack

__all__ = [
    "PROTOCOL_VERSION",
    "ROUTE_ROOM",
    "Challenge",
    "Dropped",
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
    "parse_group_prefix",
]

PROTOCOL_VERSION: Final = 2


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
    #: which of a server's tokens the client proves it knows (`handshake.key_id`);
    #: empty without a token. A Hello of seven fields has none.
    key: bytes = b""


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
    """A heartbeat; the peer must answer with a `Pong` carrying the same `seq`."""

    seq: int


class Pong(NamedTuple):
    """The answer to the `Ping` with this `seq`; no other Pong proves liveness."""

    seq: int


class Dropped(NamedTuple):
    """A relay dropped this many `messages` meant for this peer (it read too slowly)."""

    messages: int


class Envelope(NamedTuple):
    """One application message as received: who sent it, to whom, its tag and body.

    `target` None means broadcast. `body` is the message's encoded bytes, opaque to
    the transport; `Codec.decode(tag, body)` builds the object.
    """

    sender: str
    target: str | None
    tag: str
    body: bytes


class MessageGroup:
    """Consecutive messages of one sender to one target, as one frame brought them.

    The frame is kept as received: its route prefix is parsed on arrival (see
    `parse_group_prefix`) and the rest, `count` pairs of a packed tag and a packed
    body, stays bytes until somebody looks. A relay forwards `tail()` unread; an
    endpoint calls `pairs()`, which decodes the frame (within its `DecodeLimits`) once.
    Bodies stay encoded either way.
    """

    __slots__ = ("sender", "target", "count", "payload", "offset", "malformed", "_items")

    def __init__(
        self, sender: str, target: str | None, count: int, payload: bytes, offset: int
    ) -> None:
        self.sender = sender
        self.target = target
        #: how many messages the frame announces
        self.count = count
        self.payload = payload
        self.offset = offset
        #: pairs found malformed by `pairs()` (a tag that is not a string, a body that
        #: is not bytes); they are skipped
        self.malformed = 0
        self._items: list[Any] | None = None

    def __repr__(self) -> str:
        return f"<MessageGroup {self.sender!r} -> {self.target!r}: {self.count} messages>"

    @property
    def size(self) -> int:
        """Bytes of the frame's payload."""
        return len(self.payload)

    def tail(self) -> bytes:
        """The packed pairs, exactly as received: what a relay forwards."""
        return self.payload[self.offset :]

    def items(self, limits: DecodeLimits = DEFAULT_LIMITS) -> list[Any]:
        """The decoded frame, ``[0, sender, target, tag1, body1, ...]``.

        Raises:
            DecodeError: the frame is not msgpack or is over a decode limit.
        """
        items = self._items
        if items is None:
            items = unpack(self.payload, limits, few_containers=True)  # one: the group
            if type(items) is not list or len(items) != 3 + 2 * self.count:
                raise DecodeError(None, "malformed message group")
            self._items = items
        return items

    def pairs(self, limits: DecodeLimits = DEFAULT_LIMITS) -> list[tuple[str, bytes]]:
        """``(tag, body)`` of each well-formed message, in order (see `malformed`).

        Raises:
            DecodeError: the frame is not msgpack or is over a decode limit.
        """
        if self.count == 1 and self._items is None:
            # One message (a request or an answer, where latency counts): a string and
            # a bin read off the bytes, no decoder; anything else takes the general way.
            payload, pos = self.payload, self.offset
            size = len(payload)
            first = payload[pos] if pos < size else 0
            if 0xA0 <= first <= 0xBF:
                start, pos = pos + 1, pos + 1 + (first & 0x1F)
            elif first == 0xD9 and pos + 1 < size:
                start, pos = pos + 2, pos + 2 + payload[pos + 1]
            else:
                start, pos = 0, size
            if pos + 1 < size and payload[pos] == 0xC4 and pos + 2 + payload[pos + 1] == size:
                try:
                    return [(payload[start:pos].decode(), payload[pos + 2 :])]
                except UnicodeDecodeError:
                    pass  # the general way says what is wrong
        items = self.items(limits)
        tags = items[3::2]
        bodies = items[4::2]
        if set(map(type, tags)) <= _STR_ONLY and set(map(type, bodies)) <= _BYTES_ONLY:
            return list(zip(tags, bodies, strict=True))
        good = [
            (tag, body)
            for tag, body in zip(tags, bodies, strict=True)
            if type(tag) is str and type(body) is bytes
        ]
        self.malformed = len(tags) - len(good)
        return good

    def envelopes(self, limits: DecodeLimits = DEFAULT_LIMITS) -> list[Envelope]:
        """The messages as `Envelope`s."""
        sender, target = self.sender, self.target
        return [Envelope(sender, target, tag, body) for tag, body in self.pairs(limits)]


_STR_ONLY: Final = {str}
_BYTES_ONLY: Final = {bytes}


class Goodbye(NamedTuple):
    """Orderly close, with the reason."""

    reason: str


Record = Hello | Challenge | Proof | Welcome | Reject | Ping | Pong | Goodbye | Dropped

KIND_MESSAGES: Final = 0
KIND_HELLO: Final = 1

_INT = (int,)
_STR = (str,)
_BYTES = (bytes,)
_DICT = (dict,)

# kind -> (record class, allowed types per field). The kind numbers are the wire format.
_SCHEMA: Final[dict[int, tuple[type[Any], tuple[tuple[type, ...], ...]]]] = {
    1: (Hello, (_INT, _STR, _STR, _STR, _STR, _DICT, _BYTES, _BYTES)),
    2: (Challenge, (_BYTES, _BYTES)),
    3: (Proof, (_BYTES,)),
    4: (Welcome, (_STR, _STR, _STR, _DICT)),
    5: (Reject, (_STR,)),
    6: (Ping, (_INT,)),
    7: (Pong, (_INT,)),
    8: (Goodbye, (_STR,)),
    9: (Dropped, (_INT,)),
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


def bin_header(size: int) -> bytes:
    """The msgpack ``bin`` header of a `size`-byte body."""
    if size < 0x100:
        return bytes((0xC4, size))
    if size < 0x10000:
        return b"\xc5" + size.to_bytes(2, "big")
    return b"\xc6" + size.to_bytes(4, "big")


#: Room every kind-0 frame keeps for its route prefix: the largest array header (5),
#: the kind (1), and a sender and a target of up to 256 characters each, 4 bytes per
#: character at most, with their headers; rounded up.
ROUTE_ROOM: Final = 4096


def parse_group_prefix(payload: bytes) -> tuple[int, str, str | None, int] | None:
    """Read the route prefix of a kind-0 payload, without decoding the messages.

    Returns:
        ``(count, sender, target, offset)``, `offset` being where the packed pairs
        start; or None when `payload` is not a kind-0 frame (a control record).

    Raises:
        DecodeError: a kind-0 frame whose prefix is malformed.
    """
    size = len(payload)
    if size < 4:
        return None
    first = payload[0]
    if 0x90 <= first <= 0x9F:
        length, pos = first & 0x0F, 1
    elif first == 0xDC:
        length, pos = int.from_bytes(payload[1:3], "big"), 3
    elif first == 0xDD:
        length, pos = int.from_bytes(payload[1:5], "big"), 5
    else:
        return None
    if pos >= size or payload[pos] != KIND_MESSAGES:
        return None
    if length < 5 or not length % 2:
        raise DecodeError(None, "malformed message group")
    # Both names strings of up to 255 bytes (or no target), as agent ids are: read
    # here, no calls; anything else takes the general way, which says what is wrong.
    first = payload[pos + 1] if pos + 1 < size else 0
    if 0xA0 <= first <= 0xBF:
        begin, end = pos + 2, pos + 2 + (first & 0x1F)
    elif first == 0xD9 and pos + 2 < size:
        begin, end = pos + 3, pos + 3 + payload[pos + 2]
    else:
        begin = end = size
    if end < size:
        first = payload[end]
        if 0xA0 <= first <= 0xBF:
            start, stop = end + 1, end + 1 + (first & 0x1F)
        elif first == 0xD9 and end + 1 < size:
            start, stop = end + 2, end + 2 + payload[end + 1]
        else:
            start, stop = 0, (end + 1 if first == 0xC0 else size + 1)
        if stop <= size:
            try:
                name = payload[begin:end].decode()
                to = payload[start:stop].decode() if start else None
            except UnicodeDecodeError:
                pass
            else:
                return (length - 3) >> 1, name, to, stop
    sender, pos = _read_str(payload, pos + 1)
    if sender is None:
        raise DecodeError(None, "message group without a sender")
    target, pos = _read_str(payload, pos)
    return (length - 3) >> 1, sender, target, pos


def _read_str(payload: bytes, pos: int) -> tuple[str | None, int]:
    """The string (or nil) at `pos` and the position after it."""
    if pos >= len(payload):
        raise DecodeError(None, "truncated message group")
    first = payload[pos]
    if first == 0xC0:
        return None, pos + 1
    if 0xA0 <= first <= 0xBF:
        length, start = first & 0x1F, pos + 1
    elif first == 0xD9:
        length, start = payload[pos + 1] if pos + 1 < len(payload) else -1, pos + 2
    elif first == 0xDA:
        length, start = int.from_bytes(payload[pos + 1 : pos + 3], "big"), pos + 3
    else:
        raise DecodeError(None, "message group route is not a string")
    end = start + length
    if length < 0 or end > len(payload) or length > _MAX_ROUTE_BYTES:
        raise DecodeError(None, "malformed message group route")
    try:
        return payload[start:end].decode(), end
    except UnicodeDecodeError:
        raise DecodeError(None, "message group route is not UTF-8") from None


_MAX_ROUTE_BYTES: Final = 1024


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
    if not len(types) - len(cls._field_defaults) <= len(fields) <= len(types):
        raise DecodeError(cls.__name__, f"{len(fields)} fields, expected {len(types)}")
    for name, value, allowed in zip(cls._fields, fields, types, strict=False):
        if type(value) not in allowed:
            expected = " or ".join(t.__name__ for t in allowed)
            raise DecodeError(
                cls.__name__, f"field {name!r} is {type(value).__name__}, expected {expected}"
            )
    record: Record = cls(*fields)
    return record


def decode_record(payload: bytes, limits: DecodeLimits = DEFAULT_LIMITS) -> Record:
    """Decode one control-record payload.

    Raises:
        DecodeError: not msgpack, over a decode limit, not a control record, or a
            field of the wrong type.
    """
    return record_from_item(unpack(payload, limits))


def peek_version(item: Any) -> object:
    """The protocol version an unpacked Hello claims, before its other fields are checked.

    Lets a server name a version mismatch even when a newer Hello has another shape.
    Returns None when `item` is not a Hello at all.
    """
    if type(item) is list and len(item) >= 2 and item[0] == KIND_HELLO:
        return item[1]
    return None
