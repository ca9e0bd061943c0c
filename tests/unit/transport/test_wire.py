from __future__ import annotations

import re

import msgpack
import pytest

from transport import wire
from transport.errors import DecodeError
from transport.wire import (
    Challenge,
    Goodbye,
    Hello,
    MessageGroup,
    Ping,
    Pong,
    Proof,
    Record,
    Reject,
    Welcome,
    decode_record,
    encode_record,
    messages_prefix,
    parse_group_prefix,
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


def _group_payloads() -> list[bytes]:
    """Groups of one message with names, tags and bodies either side of every size the
    read paths treat apart (fixstr/str8, bin8/bin16), bad UTF-8, and each cut short."""
    bad = b"\xa2\xff\xfe"  # a fixstr that is not UTF-8
    bad8 = b"\xd9\x21" + b"\xff" * 33  # a str8 that is not UTF-8
    names = [msgpack.packb(n) for n in ("", "a", "x" * 31, "x" * 32, "é" * 10, "z" * 300)]
    names += [bad, bad8]
    targets = [msgpack.packb(t) for t in (None, "y" * 31, "y" * 40, "z" * 300)] + [bad, bad8]
    tags = [msgpack.packb(t) for t in ("T", "t" * 31, "t" * 32, "t" * 200)] + [bad, bad8]
    bodies = [msgpack.packb(b) for b in (b"", b"\x01", b"b" * 255, b"b" * 256)]
    bodies.append(msgpack.packb(7))  # not a bin: malformed
    payloads = []
    for sender in names:
        for target in targets:
            for tag in tags:
                for body in bodies:
                    payload = b"\x95\x00" + sender + target + tag + body
                    payloads += [payload, payload[:-1], payload + b"\xc0"]
    return payloads


def _reference_prefix(payload: bytes) -> object:
    """What a msgpack decoder reads of the route prefix, or DecodeError."""
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(payload)
    try:
        length = unpacker.read_array_header()
        kind, sender, target = unpacker.unpack(), unpacker.unpack(), unpacker.unpack()
    except (msgpack.OutOfData, UnicodeDecodeError, ValueError):
        return DecodeError
    assert kind == 0 and length == 5
    return (1, sender, target)


def test_the_quick_reads_of_a_group_of_one_agree_with_a_decoder() -> None:
    for payload in _group_payloads():
        try:
            prefix = parse_group_prefix(payload)
        except DecodeError:
            assert _reference_prefix(payload) is DecodeError, payload
            continue
        assert prefix is not None
        count, sender, target, offset = prefix
        assert (count, sender, target) == _reference_prefix(payload), payload
        quick = MessageGroup(sender, target, count, payload, offset)
        general = MessageGroup(sender, target, count, payload, offset)
        try:
            general.items()  # decoded first: `pairs` takes the general way
        except DecodeError:
            with pytest.raises(DecodeError):
                quick.pairs()
            continue
        assert quick.pairs() == general.pairs(), payload
        assert quick.malformed == general.malformed


def test_names_of_up_to_255_bytes_are_read_without_the_general_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def general(payload: bytes, pos: int) -> object:
        raise AssertionError("the general way was taken")

    monkeypatch.setattr(wire, "_read_str", general)
    for sender, target in [("a", None), ("x" * 32, "y" * 31), ("é" * 10, "z" * 255)]:
        payload = messages_prefix(sender, target, 1) + msgpack.packb("T") + msgpack.packb(b"")
        assert parse_group_prefix(payload) == (1, sender, target, len(payload) - 4)


def test_a_group_of_one_is_read_without_a_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    def general(*args: object, **kwargs: object) -> object:
        raise AssertionError("the decoder was used")

    monkeypatch.setattr(wire, "unpack", general)
    for tag, body in [("T", b""), ("t" * 32, b"b" * 255), ("é" * 100, b"\x00")]:
        payload = messages_prefix("s", None, 1) + msgpack.packb(tag) + msgpack.packb(body)
        prefix = parse_group_prefix(payload)
        assert prefix is not None
        assert MessageGroup("s", None, 1, payload, prefix[3]).pairs() == [(tag, body)]
