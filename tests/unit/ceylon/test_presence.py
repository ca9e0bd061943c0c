"""Presence on NATS, sans-I/O: beats, goodbyes, silence, and which playground is active."""

from __future__ import annotations

from ceylon.peer import AgentDetail
from ceylon.presence import Change, Presence

A = AgentDetail("a1", "alice", "worker")
B = AgentDetail("b1", "bob", "worker")
PG_OLD = AgentDetail("p1", "playground", "playground")
PG_NEW = AgentDetail("p2", "playground", "playground")


def test_a_first_beat_is_a_join_and_later_ones_change_nothing() -> None:
    presence = Presence("me", timeout=1.0)
    assert presence.beat(A, 0.0) == [Change(A, True)]
    assert presence.beat(A, 0.5) == []
    assert list(presence) == [A] and "a1" in presence and len(presence) == 1
    assert presence.beat(AgentDetail("me", "myself"), 0.0) == []  # never itself


def test_details_that_change_are_a_leave_and_a_join() -> None:
    presence = Presence("me", timeout=1.0)
    presence.beat(A, 0.0)
    moved = AgentDetail("a1", "alice", "worker", extra_data={"slots": 2})
    assert presence.beat(moved, 0.1) == [Change(A, False, "came back changed"), Change(moved, True)]
    assert presence.find("alice") == moved


def test_a_bye_and_silence_are_leaves_with_their_reasons() -> None:
    presence = Presence("me", timeout=1.0)
    presence.beat(A, 0.0)
    presence.beat(B, 0.0)
    assert presence.bye("a1", "agent stopping") == [Change(A, False, "agent stopping")]
    assert presence.bye("a1") == []  # once
    presence.beat(B, 0.9)
    assert presence.expire(1.5) == []  # heard 0.6 s ago
    (gone,) = presence.expire(2.0)
    assert (gone.detail, gone.joined) == (B, False)
    assert gone.reason == "no heartbeat for 1.1 s"
    assert presence.find("bob") is None and len(presence) == 0


def test_lookups_by_id_and_name() -> None:
    presence = Presence("me", timeout=1.0)
    presence.beat(A, 0.0)
    assert presence.find("a1") == A and presence.find("alice") == A
    assert presence.find("nobody") is None


def test_the_playground_is_the_highest_epoch_and_takes_the_name() -> None:
    presence = Presence("me", timeout=1.0)
    assert presence.playground() is None
    presence.beat(A, 0.0)
    presence.beat(PG_OLD, 0.0, epoch=3)
    assert presence.playground() == PG_OLD
    presence.beat(PG_NEW, 0.1, epoch=7)  # took over: the old one has not expired yet
    assert presence.playground() == PG_NEW
    assert presence.find("playground") == PG_NEW
    presence.beat(PG_OLD, 0.2, epoch=3)  # still beating (paused, then resumed)
    assert presence.find("playground") == PG_NEW and presence.epoch_of("p2") == 7


def test_sessions_count_reconnections_and_clear_empties() -> None:
    presence = Presence("me", timeout=1.0)
    presence.beat(A, 0.0, session=0)
    assert presence.beat(A, 0.1, session=1) == []  # the same agent: no leave, no join
    assert presence.session_of("a1") == 1
    assert presence.beat(A, 0.2, session=0) == [] and presence.session_of("a1") == 1
    presence.beat(B, 0.0)
    left = presence.clear("lost NATS")
    assert {c.detail.id for c in left} == {"a1", "b1"} and not any(c.joined for c in left)
    assert len(presence) == 0
