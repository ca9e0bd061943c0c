"""The queue of received messages between the read path and the consumer, sans-I/O.

Messages arrive in `MessageGroup`s (one per frame). The inbox keeps the groups as they
came and hands them out whole (`take_groups`, the fast path) or one `Envelope` at a
time (`take`, `take_many`), remembering how far into the first group it has got. It
counts messages and the bytes they arrived in, which is what the connection's
backpressure is decided on.
"""

from __future__ import annotations

import collections

from .codec import find_unresolved
from .wire import Envelope, MessageGroup

__all__ = ["Inbox"]


class Inbox:
    """FIFO of received message groups with message and byte counts."""

    __slots__ = ("_groups", "_head", "count", "bytes")

    def __init__(self) -> None:
        self._groups: collections.deque[MessageGroup] = collections.deque()
        self._head = 0  # messages of _groups[0] already taken
        #: messages waiting
        self.count = 0
        #: bytes the waiting messages arrived in (an estimate once partly taken)
        self.bytes = 0

    def __len__(self) -> int:
        """Messages waiting."""
        return self.count

    def put(self, groups: list[MessageGroup], nbytes: int) -> None:
        """Queue groups that arrived together in `nbytes` bytes."""
        self._groups.extend(groups)
        if len(groups) == 1:
            self.count += (len(groups[0].items) - 3) >> 1
        else:
            self.count += (sum([len(g.items) for g in groups]) - 3 * len(groups)) >> 1
        self.bytes += nbytes

    def _taken(self, count: int) -> None:
        before = self.count
        self.count = before - count
        # Bodies are unpacked values: their memory is estimated by the bytes they
        # arrived in, shared out evenly as messages leave.
        self.bytes = self.bytes * self.count // before if self.count else 0

    def take(self) -> Envelope:
        """The next message.

        Raises:
            IndexError: the inbox is empty.
        """
        group = self._groups[0]
        head = self._head
        items = group.items
        at = 3 + 2 * head
        body = items[at + 1]
        unresolved = group.unresolved and find_unresolved(body)
        envelope = Envelope(group.sender, group.target, items[at], body, unresolved)
        if at + 2 == len(items):
            self._groups.popleft()
            self._head = 0
        else:
            self._head = head + 1
        self._taken(1)
        return envelope

    def take_many(self, limit: int) -> list[Envelope]:
        """Up to `limit` messages, in order."""
        out: list[Envelope] = []
        groups = self._groups
        while groups and len(out) < limit:
            group = groups[0]
            stop = min(group.size, self._head + limit - len(out))
            out += group.envelopes(self._head, stop)
            if stop == group.size:
                groups.popleft()
                self._head = 0
            else:
                self._head = stop
        self._taken(len(out))
        return out

    def take_groups(self) -> list[MessageGroup]:
        """Every waiting message, as the groups they came in."""
        groups = list(self._groups)
        self._groups.clear()
        if groups and self._head:
            first = groups[0]
            rest = first.items[:3] + first.items[3 + 2 * self._head :]
            groups[0] = first._replace(items=rest)
        self._head = 0
        self._taken(self.count)
        return groups
