from __future__ import annotations

from transport.inbox import Inbox
from transport.wire import Envelope, MessageGroup


def group(sender: str, *bodies: int, target: str | None = None) -> MessageGroup:
    items: list[object] = [0, sender, target]
    for body in bodies:
        items += ["T", body]
    return MessageGroup(sender, target, items)


def test_take_walks_through_groups_in_order() -> None:
    inbox = Inbox()
    inbox.put([group("a", 1, 2), group("b", 3)], 300)
    assert len(inbox) == 3 and inbox.bytes == 300
    assert inbox.take() == Envelope("a", None, "T", 1)
    assert inbox.take() == Envelope("a", None, "T", 2)
    assert len(inbox) == 1 and 0 < inbox.bytes < 300
    assert inbox.take() == Envelope("b", None, "T", 3)
    assert len(inbox) == 0 and inbox.bytes == 0


def test_take_many_splits_groups_and_take_groups_keeps_the_rest() -> None:
    inbox = Inbox()
    inbox.put([group("a", 1, 2, 3), group("b", 4, 5)], 100)
    assert [e.body for e in inbox.take_many(2)] == [1, 2]
    assert [e.body for e in inbox.take_many(2)] == [3, 4]
    inbox.put([group("c", 6)], 10)
    rest = inbox.take_groups()
    assert [(g.sender, [b for _, b in g.pairs()]) for g in rest] == [("b", [5]), ("c", [6])]
    assert len(inbox) == 0 and inbox.bytes == 0


def test_take_groups_after_a_partial_take() -> None:
    inbox = Inbox()
    inbox.put([group("a", 1, 2, 3)], 30)
    inbox.take()
    (rest,) = inbox.take_groups()
    assert rest.size == 2 and [e.body for e in rest.envelopes()] == [2, 3]
