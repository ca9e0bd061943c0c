from __future__ import annotations

import msgpack

from transport.inbox import Inbox
from transport.limits import DecodeLimits
from transport.wire import Envelope, MessageGroup, messages_prefix, parse_group_prefix


def group(sender: str, *bodies: int, target: str | None = None) -> MessageGroup:
    payload = messages_prefix(sender, target, len(bodies))
    for body in bodies:
        payload += msgpack.packb("T") + msgpack.packb(bytes([body]), use_bin_type=True)
    prefix = parse_group_prefix(payload)
    assert prefix is not None
    count, sender, target, offset = prefix
    return MessageGroup(sender, target, count, payload, offset)


def test_take_walks_through_groups_in_order() -> None:
    inbox = Inbox()
    first, second = group("a", 1, 2), group("b", 3)
    inbox.put([first, second])
    assert len(inbox) == 3 and inbox.bytes == first.size + second.size
    assert inbox.take() == Envelope("a", None, "T", b"\x01")
    assert inbox.take() == Envelope("a", None, "T", b"\x02")
    assert len(inbox) == 1 and inbox.bytes == second.size
    assert inbox.take() == Envelope("b", None, "T", b"\x03")
    assert len(inbox) == 0 and inbox.bytes == 0


def test_take_many_splits_groups_and_take_groups_keeps_the_rest() -> None:
    inbox = Inbox()
    inbox.put([group("a", 1, 2, 3), group("b", 4, 5)])
    assert [e.body for e in inbox.take_many(2)] == [b"\x01", b"\x02"]
    assert [e.body for e in inbox.take_many(2)] == [b"\x03", b"\x04"]
    assert [e.body for e in inbox.take_many(1)] == [b"\x05"]
    inbox.put([group("c", 6)])
    rest = inbox.take_groups()
    assert [(g.sender, [b for _, b in g.pairs()]) for g in rest] == [("c", [b"\x06"])]
    assert len(inbox) == 0 and inbox.bytes == 0


def test_take_groups_after_a_partial_take_keeps_the_rest() -> None:
    inbox = Inbox()
    inbox.put([group("a", 1, 2, 3), group("b", 4)])
    inbox.take()
    rest, other = inbox.take_groups()
    assert rest.count == 2 and [e.body for e in rest.envelopes()] == [b"\x02", b"\x03"]
    assert other.sender == "b" and len(inbox) == 0


def test_an_undecodable_group_is_skipped_and_reported() -> None:
    inbox = Inbox(DecodeLimits(floor=8, elements_divisor=64))
    bad = group("a", *range(40))  # 40 messages are too many elements for this limit
    inbox.put([bad, group("b", 7)])
    assert inbox.take() == Envelope("b", None, "T", b"\x07")
    assert len(inbox.errors) == 1 and "limit" in inbox.errors[0].reason
    assert len(inbox) == 0 and inbox.bytes == 0
