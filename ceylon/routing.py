"""The playground's directory of agents and its routing decisions, sans-I/O.

Who is connected, under which unique name, who must hear about joins and leaves, and
where a message goes. Nothing here sends anything: the playground glue asks and acts.

Membership news is not sent to everyone (with a thousand agents that is a million
notices): an agent that declared on_connect/on_disconnect handlers *subscribes* to all
of it; any other agent is told only about the agents it looked up (it *watches* them),
so that a send to an agent that has left fails at the sender.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
from collections.abc import Iterator

from .peer import AgentDetail

__all__ = ["Directory", "Member"]


@dataclasses.dataclass
class Member:
    """One connected agent, as the playground knows it."""

    detail: AgentDetail
    subscribed: bool = False


class Directory:
    """Agents of one workspace, by id and by unique name.

    Args:
        own: the playground's own details; its name is reserved.
    """

    def __init__(self, own: AgentDetail, resume_window: float = 600.0) -> None:
        self.own = own
        #: seconds a gone agent's id stays reserved for it (its resume secret)
        self.resume_window = resume_window
        self._secrets: dict[str, str] = {}  # agent id -> digest of its resume secret
        self._gone: dict[str, float] = {}  # agent id -> when it left, oldest first
        self._members: dict[str, Member] = {}
        self._ids_by_name: dict[str, str] = {}
        self._watchers: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._members)

    def __iter__(self) -> Iterator[Member]:
        return iter(list(self._members.values()))

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self._members

    def refusal(self, agent_id: str, name: str) -> str | None:
        """Why an agent claiming `agent_id` and `name` may not join, or None.

        Ids and names are one namespace: neither may equal another agent's id or name.
        The same agent may come back (see `reclaim_refusal` for the proof it must give).
        """
        if not name:
            return "an agent needs a non-empty name"
        own = self.own
        if name in (own.name, own.id) or agent_id in (own.id, own.name):
            return f"name {name!r} is the playground's own"
        holder = self._ids_by_name.get(name)
        if holder is not None and holder != agent_id:
            return f"name {name!r} is already taken in this workspace"
        if name != agent_id and name in self._members:
            return f"name {name!r} is another agent's id"
        named = self._ids_by_name.get(agent_id)
        if named is not None and named != agent_id:
            return f"id {agent_id!r} is another agent's name"
        member = self._members.get(agent_id)
        if member is not None and member.detail.name != name:  # only the same agent returns
            return f"id {agent_id!r} is already in use by agent {member.detail.name!r}"
        return None

    def reclaim_refusal(self, agent_id: str, resume: str | None, now: float) -> str | None:
        """Why `agent_id` may not be taken with the resume secret `resume`, or None.

        An id that is live, or left less than `resume_window` seconds ago, may only be
        reclaimed with the resume secret its last admission issued (`admit`): the agent
        reconnecting has it, an impersonator does not.
        """
        self._expire(now)
        expected = self._secrets.get(agent_id)
        if expected is not None and not hmac.compare_digest(expected, _digest(resume or "")):
            return (
                f"id {agent_id!r} is held by an agent (or was, moments ago); reclaiming it "
                f"needs the resume secret that agent was given"
            )
        return None

    def issued(self, agent_id: str) -> bool:
        """Whether this directory gave `agent_id` a resume secret that still counts."""
        return agent_id in self._secrets

    def admit(self, agent_id: str) -> str:
        """A fresh resume secret for `agent_id` (the one before it no longer counts)."""
        secret = secrets.token_hex(16)
        self._secrets[agent_id] = _digest(secret)
        self._gone.pop(agent_id, None)
        return secret

    def _expire(self, now: float) -> None:
        while self._gone:
            agent_id, left_at = next(iter(self._gone.items()))
            if now - left_at < self.resume_window:
                return
            del self._gone[agent_id]
            if agent_id not in self._members:
                self._secrets.pop(agent_id, None)

    def join(self, detail: AgentDetail, *, subscribed: bool) -> Member | None:
        """Add an agent; return the member it replaces (same id, reconnecting), if any."""
        previous = self._members.pop(detail.id, None)
        if previous is not None:
            self._ids_by_name.pop(previous.detail.name, None)
        member = Member(detail, subscribed)
        self._members[detail.id] = member
        self._ids_by_name[detail.name] = detail.id
        return previous

    def leave(self, agent_id: str, left_at: float = 0.0) -> tuple[Member | None, set[str]]:
        """Remove an agent; return it and the ids of the agents to tell."""
        member = self._members.pop(agent_id, None)
        if agent_id in self._secrets:  # its secret holds a while: it may come back
            self._gone.pop(agent_id, None)
            self._gone[agent_id] = left_at
        if member is None:
            return None, set()
        self._ids_by_name.pop(member.detail.name, None)
        notify = self._watchers.pop(agent_id, set())
        notify |= {m.detail.id for m in self._members.values() if m.subscribed}
        for watched in self._watchers.values():
            watched.discard(agent_id)
        notify.discard(agent_id)
        notify.intersection_update(self._members)
        return member, notify

    def find(self, key: str) -> AgentDetail | None:
        """The agent whose id, or else name, is `key` (the playground included)."""
        if key in (self.own.id, self.own.name):
            return self.own
        member = self._members.get(key)
        if member is None:
            agent_id = self._ids_by_name.get(key)
            member = self._members.get(agent_id) if agent_id is not None else None
        return member.detail if member is not None else None

    def resolve(self, requester: str, key: str) -> AgentDetail | None:
        """`find`, and remember that `requester` must hear if that agent leaves."""
        detail = self.find(key)
        if detail is not None and detail.id != self.own.id and requester != detail.id:
            self._watchers.setdefault(detail.id, set()).add(requester)
        return detail

    def introduce(self, receiver: str, sender: str) -> bool:
        """Record that `receiver` learns about `sender`; True the first time.

        A receiver that subscribed already knows everyone; any other receiver is told
        about a sender before its first message, and then watches it.
        """
        member = self._members.get(receiver)
        if member is None or member.subscribed or sender == self.own.id:
            return False
        watchers = self._watchers.get(sender)  # (not setdefault: no new set per message)
        if watchers is None:
            watchers = self._watchers[sender] = set()
        elif receiver in watchers:
            return False
        watchers.add(receiver)
        return True

    def subscribers(self, *, exclude: str | None = None) -> list[str]:
        """Ids of the agents that hear every join and leave."""
        return [
            m.detail.id for m in self._members.values() if m.subscribed and m.detail.id != exclude
        ]

    def details(self) -> list[AgentDetail]:
        """Every connected agent, the playground first."""
        return [self.own, *(m.detail for m in self._members.values())]


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
