from __future__ import annotations

from ceylon.peer import AgentDetail
from ceylon.routing import Directory

PG = AgentDetail("pg-id", "playground", "playground")


def agent(n: int, role: str = "worker") -> AgentDetail:
    return AgentDetail(f"id-{n}", f"agent-{n}", role)


def test_names_are_unique_and_the_playground_name_is_reserved() -> None:
    d = Directory(PG)
    assert d.refusal("id-1", "agent-1") is None
    d.join(agent(1), subscribed=False)
    assert "already taken" in (d.refusal("id-9", "agent-1") or "")
    assert d.refusal("id-1", "agent-1") is None  # the same agent reconnecting
    assert "already in use" in (d.refusal("id-1", "impostor") or "")  # same id, other name
    assert "playground's own" in (d.refusal("id-9", "playground") or "")
    assert "non-empty" in (d.refusal("id-9", "") or "")


def test_reconnect_with_the_same_id_replaces_the_member() -> None:
    d = Directory(PG)
    d.join(agent(1), subscribed=False)
    previous = d.join(AgentDetail("id-1", "agent-1", "worker", "new-address"), subscribed=True)
    assert previous is not None and len(d) == 1
    assert d.find("agent-1") == AgentDetail("id-1", "agent-1", "worker", "new-address")


def test_find_by_id_or_name_including_the_playground() -> None:
    d = Directory(PG)
    d.join(agent(1), subscribed=False)
    assert d.find("id-1") == agent(1) and d.find("agent-1") == agent(1)
    assert d.find("playground") == PG and d.find("pg-id") == PG
    assert d.find("nobody") is None


def test_leave_notifies_subscribers_and_watchers_only() -> None:
    d = Directory(PG)
    for n, subscribed in ((1, True), (2, False), (3, False), (4, False)):
        d.join(agent(n), subscribed=subscribed)
    assert d.resolve("id-2", "agent-4") == agent(4)  # agent 2 watches agent 4
    assert d.introduce("id-3", "id-4")  # agent 3 was told about agent 4
    assert not d.introduce("id-3", "id-4")  # only once
    assert not d.introduce("id-1", "id-4")  # a subscriber knows everyone already
    member, notify = d.leave("id-4")
    assert member is not None and member.detail == agent(4)
    assert notify == {"id-1", "id-2", "id-3"}
    assert d.find("agent-4") is None
    assert d.leave("id-4") == (None, set())


def test_watchers_of_a_departed_watcher_are_cleaned() -> None:
    d = Directory(PG)
    d.join(agent(1), subscribed=False)
    d.join(agent(2), subscribed=False)
    d.resolve("id-1", "agent-2")
    d.leave("id-1")
    _, notify = d.leave("id-2")
    assert notify == set()


def test_details_list_the_playground_first() -> None:
    d = Directory(PG)
    d.join(agent(1), subscribed=False)
    assert d.details() == [PG, agent(1)]
    assert d.subscribers() == []
