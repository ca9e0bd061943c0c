"""The queue of received messages between the read path and the consumer, sans-I/O.

Messages arrive in `MessageGroup`s (one per frame). The inbox keeps the groups as they
came and hands them out whole (`take_groups`, the fast path) or one `Envelope` at a
time (`take`, `take_many`), decoding a group's frame when its first message is taken
and remembering how far into it it has got. It counts messages and the bytes they
arrived in, which is what the connection's backpressure is decided on.
"""

from __future__ import annotations

import collections

import msgpack

from .errors import DecodeError
from .limits import DEFAULT_LIMITS, DecodeLimits
from .wire import Envelope, MessageGroup, messages_prefix

__all__ = ["Inbox"]


class Inbox:
    """FIFO of received message groups with message and byte counts.

    Args:
        limits: what decoding one frame may cost.
    """

    __slots__ = ("_groups", "_head", "_envelopes", "limits", "count", "bytes", "errors")

    def __init__(self, limits: DecodeLimits = DEFAULT_LIMITS) -> None:
        self._groups: collections.deque[MessageGroup] = collections.deque()
        self._head = 0  # messages of the first group already taken
        self._envelopes: list[Envelope] | None = None  # the first group, decoded
        self.limits = limits
        #: messages waiting
        self.count = 0
        #: bytes the waiting messages arrived in
        self.bytes = 0
        #: frames that could not be decoded when taken (the consumer reports them)
        self.errors: list[DecodeError] = []

    def __len__(self) -> int:
        """Messages waiting."""
        return self.count

    def put(self, groups: list[MessageGroup]) -> None:
        """Queue groups as they arrived."""
        self._groups.extend(groups)
        for group in groups:
            self.count += group.count
            self.bytes += len(group.payload)

    def _first(self) -> list[Envelope] | None:
        """The decoded first group, or None when the inbox is empty."""
        while self._envelopes is None and self._groups:
            group = self._groups[0]
            try:
                self._envelopes = group.envelopes(self.limits)
            except DecodeError as exc:
                self.errors.append(exc)
                self._pop()
                continue
            self._head = 0
            self.count -= group.count - len(self._envelopes)  # malformed ones skipped
            if not self._envelopes:
                self._pop()
        return self._envelopes

    def _pop(self) -> None:
        group = self._groups.popleft()
        self.bytes -= len(group.payload)
        left = len(self._envelopes) - self._head if self._envelopes is not None else group.count
        self.count -= left
        self._envelopes = None
        self._head = 0

    def take(self) -> Envelope:
        """The next message.

        Raises:
            IndexError: the inbox is empty.
        """
        envelopes = self._first()
        if envelopes is None:
            raise IndexError("the inbox is empty")
        envelope = envelopes[self._head]
        self._head += 1
        self.count -= 1
        if self._head == len(envelopes):
            self._envelopes = None  # all taken: nothing left to subtract
            group = self._groups.popleft()
            self.bytes -= len(group.payload)
            self._head = 0
        return envelope

    def take_many(self, limit: int) -> list[Envelope]:
        """Up to `limit` messages, in order."""
        out: list[Envelope] = []
        while len(out) < limit and self._first() is not None:
            out.append(self.take())
        return out

    def take_groups(self) -> list[MessageGroup]:
        """Every waiting message, as the groups they came in (the rest of a group
        partly taken by `take` as a group of its own)."""
        rest: list[MessageGroup] = []
        envelopes = self._envelopes
        if envelopes is not None:
            rest.append(_regroup(envelopes[self._head :]))
            self._envelopes = None
            self._groups.popleft()
            self._head = 0
        rest += self._groups
        self._groups.clear()
        self.count = 0
        self.bytes = 0
        return rest

    @property
    def started(self) -> bool:
        """Whether the first group is partly taken (see `take_groups`)."""
        return self._envelopes is not None


def _regroup(envelopes: list[Envelope]) -> MessageGroup:
    """Pack envelopes of one group again into a group (a rare path: see `take_groups`)."""
    first = envelopes[0]
    payload = messages_prefix(first.sender, first.target, len(envelopes))
    offset = len(payload)
    payload += b"".join(_pack(e.tag) + _pack(e.body) for e in envelopes)
    return MessageGroup(first.sender, first.target, len(envelopes), payload, offset)


_pack = msgpack.Packer(use_bin_type=True).pack
