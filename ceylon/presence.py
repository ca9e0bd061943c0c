"""Who is in a workspace on NATS, from what each agent says of itself, sans-I/O.

Every agent sends a `Beat` when it joins and every heartbeat interval after; a `Bye`
when it leaves. An agent is *present* from its first beat until its `Bye`, or until
nothing was heard of it for longer than the heartbeat timeout (it died). Beats also
count the sender's reconnections to NATS (its *session*): what was sent to it, or by
it, while it was away may be lost. The active
playground beats with its lease epoch; when two agents claim the name ``playground``
(one taking over from one not yet expired), the higher epoch is the playground.

Time comes in as an argument; nothing here reads a clock or sends anything.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from .peer import AgentDetail

__all__ = ["Change", "Presence"]


@dataclasses.dataclass
class _Seen:
    detail: AgentDetail
    last: float
    epoch: int
    session: int = 0


@dataclasses.dataclass(frozen=True)
class Change:
    """An agent joined (`joined`) or left; `reason` says why it left."""

    detail: AgentDetail
    joined: bool
    reason: str = ""


class Presence:
    """The agents present, by id and name.

    Args:
        own_id: this agent's id (never among the present).
        timeout: seconds without a beat after which an agent is gone.
    """

    def __init__(self, own_id: str, timeout: float) -> None:
        self.own_id = own_id
        self.timeout = timeout
        self._seen: dict[str, _Seen] = {}
        self._by_name: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def __iter__(self) -> Iterator[AgentDetail]:
        return iter([seen.detail for seen in self._seen.values()])

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self._seen

    def beat(
        self, detail: AgentDetail, now: float, epoch: int = 0, session: int = 0
    ) -> list[Change]:
        """`detail` said it is here; the changes that makes (a join, or a leave and a
        join when it comes back with other details)."""
        if detail.id == self.own_id:
            return []
        seen = self._seen.get(detail.id)
        if seen is not None:
            seen.last = now
            seen.epoch = max(seen.epoch, epoch)
            seen.session = max(seen.session, session)
            if seen.detail == detail:
                return []
            left = self._forget(detail.id)
            changes = [Change(left.detail, False, "came back changed")] if left else []
        else:
            changes = []
        self._seen[detail.id] = _Seen(detail, now, epoch, session)
        self._by_name.setdefault(detail.name, set()).add(detail.id)
        return [*changes, Change(detail, True)]

    def bye(self, agent_id: str, reason: str = "left") -> list[Change]:
        """The agent said it leaves."""
        seen = self._forget(agent_id)
        return [Change(seen.detail, False, reason)] if seen is not None else []

    def expire(self, now: float) -> list[Change]:
        """The agents not heard of for longer than the timeout: gone."""
        deadline = now - self.timeout
        dead = [agent_id for agent_id, seen in self._seen.items() if seen.last < deadline]
        changes = []
        for agent_id in dead:
            seen = self._forget(agent_id)
            if seen is not None:
                silent = now - seen.last
                changes.append(Change(seen.detail, False, f"no heartbeat for {silent:.1f} s"))
        return changes

    def heard(self, agent_id: str, now: float) -> None:
        """`agent_id` said again what it said before: it is still here."""
        seen = self._seen.get(agent_id)
        if seen is not None:
            seen.last = now

    def touch(self, now: float) -> None:
        """Count everyone as heard of `now` (this agent was away: their silence meanwhile
        proves nothing)."""
        for seen in self._seen.values():
            seen.last = now

    def clear(self, reason: str) -> list[Change]:
        """Everyone is gone (this agent lost NATS)."""
        return [change for agent_id in list(self._seen) for change in self.bye(agent_id, reason)]

    def _forget(self, agent_id: str) -> _Seen | None:
        seen = self._seen.pop(agent_id, None)
        if seen is not None:
            ids = self._by_name.get(seen.detail.name)
            if ids is not None:
                ids.discard(agent_id)
                if not ids:
                    del self._by_name[seen.detail.name]
        return seen

    def find(self, key: str) -> AgentDetail | None:
        """The agent whose id, or else name, is `key`; of two with one name, the one
        with the higher epoch (a playground taking over), else the one heard last."""
        seen = self._seen.get(key)
        if seen is not None:
            return seen.detail
        ids = self._by_name.get(key)
        if not ids:
            return None
        best = max((self._seen[i] for i in ids), key=lambda s: (s.epoch, s.last))
        return best.detail

    def epoch_of(self, agent_id: str) -> int:
        seen = self._seen.get(agent_id)
        return seen.epoch if seen is not None else 0

    def session_of(self, agent_id: str) -> int:
        seen = self._seen.get(agent_id)
        return seen.session if seen is not None else 0

    def playground(self) -> AgentDetail | None:
        """The active playground: the agent present with the highest epoch (> 0)."""
        best: _Seen | None = None
        for seen in self._seen.values():
            if seen.epoch and (best is None or (seen.epoch, seen.last) > (best.epoch, best.last)):
                best = seen
        return best.detail if best is not None else None
