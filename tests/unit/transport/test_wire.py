from __future__ import annotations

import re

import msgpack
import pytest

from transport.errors import DecodeError
from transport.wire import (
    Challenge,
    Goodbye,
    Hello,
    Ping,
    Pong,
    Proof,
    Record,
    Reject,
    Welcome,
    decode_record,
    encode_record,
    messages_prefix,
    peek_version,
)

RECORDS: list[Record] = [
    Hello(1, "ws", "id", "name", "role", {"k": [1, 2]}, b"n" * 32),
    Challenge(b"n" * 32, b"p" * 32),
    Proof(b"p" * 32),
    Welcome("id", "name", "role", {}),
    Reject("no"),
    Ping(1),
    Pong(2**40),
    Goodbye("bye"),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_round_trip(record: Record) -> None:
    assert decode_record(encode_record(record)) == record


def test_message_group_layout() -> None:
    bodies = [msgpack.packb("T"), msgpack.packb({"x": 1}), msgpack.packb("U"), msgpack.packb(2)]
    payload = messages_prefix("s", None, 2) + b"".join(bodies)
    assert msgpack.unpackb(payload) == [0, "s", None, "T", {"x": 1}, "U", 2]
    big = messages_prefix("s", "t", 40_000) + b"\xc0" * 80_000
    assert len(msgpack.unpackb(big)) == 80_003


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"\xc1", "not msgpack"),
        (msgpack.packb({"a": 1}), "not a [kind"),
        (msgpack.packb([]), "not a [kind"),
        (msgpack.packb(["0"]), "not a [kind"),
        (msgpack.packb([42, 1]), "unknown record kind 42"),
        (msgpack.packb([5]), "0 fields, expected 1"),
        (msgpack.packb([6, "1"]), "field 'seq' is str"),
        (msgpack.packb([6, True]), "field 'seq' is bool"),
        (msgpack.packb([0, "a", None, "T", {}]), "unknown record kind 0"),
    ],
)
def test_malformed_records_raise_decode_error(payload: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=re.escape(message)):
        decode_record(payload)


def test_peek_version() -> None:
    assert peek_version([1, 7, "whatever"]) == 7
    assert peek_version([6, 1]) is None
    assert peek_version({"not": "a list"}) is None
