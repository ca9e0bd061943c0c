"""The protocol's own records and their msgpack encoding, sans-I/O.

Every frame carries one record, encoded as a msgpack array ``[kind, *fields]``.
Application messages ride inside `Envelope` as a type tag and an opaque body, so a relay
can forward them without decoding (or even knowing) the application's types.

Records are `NamedTuple`s rather than frozen dataclasses: they are just as immutable
and typed, and building one per received message is several times cheaper.
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

import msgpack

from .errors import DecodeError

__all__ = [
    "PROTOCOL_VERSION",
    "Challenge",
    "Envelope",
    "Goodbye",
    "Hello",
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
    """An application message: `target` None means broadcast."""

    sender: str
    target: str | None
    tag: str
    body: bytes


class Goodbye(NamedTuple):
    """Orderly close, with the reason."""

    reason: str


Record = Hello | Challenge | Proof | Welcome | Reject | Ping | Pong | Envelope | Goodbye

_NONE = type(None)
_INT = (int,)
_STR = (str,)
_BYTES = (bytes,)
_DICT = (dict,)

# kind -> (record class, allowed types per field). The kind numbers are the wire format.
_SCHEMA: Final[dict[int, tuple[type[Any], tuple[tuple[type, ...], ...]]]] = {
    0: (Envelope, (_STR, (str, _NONE), _STR, _BYTES)),
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
KIND_ENVELOPE: Final = 0
KIND_HELLO: Final = 1

_packb = msgpack.Packer(use_bin_type=True).pack
_unpackb = msgpack.unpackb


def encode_record(record: Record) -> bytes:
    """Encode a record as a frame payload (without the length prefix)."""
    return _packb([_KIND_OF[type(record)], *record])  # type: ignore[no-any-return]


def encode_envelope(sender: str, target: str | None, tag: str, body: bytes) -> bytes:
    """Encode an `Envelope` without building the record first (the hot path)."""
    return _packb([KIND_ENVELOPE, sender, target, tag, body])  # type: ignore[no-any-return]


def decode_record(payload: bytes) -> Record:
    """Decode one frame payload into its record.

    Raises:
        DecodeError: not msgpack, not a record, or a field of the wrong type.
    """
    try:
        item = _unpackb(payload, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack reports malformed input with several types
        raise DecodeError(None, f"frame is not msgpack: {type(exc).__name__}: {exc}") from None
    if type(item) is not list or not item or type(item[0]) is not int:
        raise DecodeError(None, "frame is not a [kind, ...] record")
    kind = item[0]
    if kind == KIND_ENVELOPE and len(item) == 5:
        # Hot path, checked inline.
        _, sender, target, tag, body = item
        if (
            type(sender) is str
            and (target is None or type(target) is str)
            and type(tag) is str
            and type(body) is bytes
        ):
            return Envelope(sender, target, tag, body)
    entry = _SCHEMA.get(kind)
    if entry is None:
        raise DecodeError(None, f"unknown record kind {kind}")
    cls, types = entry
    fields = item[1:]
    if len(fields) != len(types):
        raise DecodeError(
            cls.__name__, f"{len(fields)} fields, expected {len(types)}"
        )
    for name, value, allowed in zip(cls._fields, fields, types, strict=True):
        if type(value) not in allowed:
            raise DecodeError(
                cls.__name__, f"field {name!r} is {type(value).__name__}, expected "
                + " or ".join(t.__name__ for t in allowed)
            )
    record: Record = cls(*fields)
    return record


def peek_version(payload: bytes) -> object:
    """The protocol version a Hello claims, read before its other fields are checked.

    Lets a server name a version mismatch even when a newer Hello has another shape.
    Returns None when the payload is not a Hello at all.
    """
    try:
        item = _unpackb(payload, raw=False, strict_map_key=False)
    except Exception:
        return None
    if type(item) is list and len(item) >= 2 and item[0] == KIND_HELLO:
        return item[1]
    return None
