"""A hub that forwards messages between connections, as bytes, and keeps slow
consumers from holding anybody else up.

Each connection is added under a key (its peer's id). A message group arriving from
one is routed on its prefix alone: a broadcast goes to every other connection, a
direct group to the connection of its target, and groups for the hub itself are
decoded and handed to the owner (`LocalCallback`). Forwarding writes the group's
packed messages, unread and undecoded, behind a route naming the sender the hub
authenticated, never the one the frame claims; one frame is forwarded to a hundred
receivers without a single message being built.

Slow consumers, as NATS has it. Every connection's outgoing queue is bounded
(`ConnectionOptions.max_pending_bytes`/`max_pending_messages`). A receiver over its
bound is *congested*; then, by `RouterOptions.slow_consumer`:

* ``"disconnect"`` (the default): if it is still congested `grace` seconds later it is
  disconnected with the reason "slow consumer". Meanwhile a sender that has added more
  than `pause_share` bytes to its queue is paused (TCP backpressure), so a flood waits
  for a receiver that is merely behind; a sender sending little is never paused, and
  no sender waits for one receiver longer than `grace` (nor half its heartbeat
  timeout: its Pings wait unread meanwhile), and each is paused once per episode. A
  queue that reaches `max_buffer` is cut at once.
* ``"drop"``: what would be queued for it is dropped instead, counted, and the count
  sent to it (a `Dropped` record) once it has caught up; nobody is ever paused.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import enum
from collections.abc import Callable
from typing import Any, Final

from loguru import logger

from .connection import Connection
from .errors import ConnectionClosed, DecodeError, ProtocolError
from .wire import MessageGroup

__all__ = [
    "LocalCallback",
    "Router",
    "RouterOptions",
    "SendCheck",
    "SlowConsumerPolicy",
]

#: Messages for the hub itself: ``(sender key, target, [(tag, body), ...])``; target
#: None for a broadcast.
LocalCallback = Callable[[str, "str | None", list[tuple[str, bytes]]], None]
#: A group that goes nowhere: ``(sender key, target, tags, reason)``; the target is
#: None for a refused broadcast.
UnroutableCallback = Callable[[str, "str | None", list[str], str], None]
#: Asked before a member's group is forwarded: ``(sender key, target or None for a
#: broadcast)``; returns None to let it through, or why not.
SendCheck = Callable[[str, "str | None"], "str | None"]
#: Called before the first forward from a sender to a receiver: ``(receiver, sender)``.
IntroduceCallback = Callable[[str, str], None]


class SlowConsumerPolicy(enum.Enum):
    """What a router does with a receiver that cannot keep up (see the module docstring)."""

    DISCONNECT = "disconnect"
    DROP = "drop"


@dataclasses.dataclass(frozen=True)
class RouterOptions:
    """How a `Router` treats slow consumers.

    Attributes:
        slow_consumer: disconnect them (default) or drop their excess messages.
        grace: seconds a receiver may stay congested before it is disconnected.
        pause_share: bytes a sender may add to a congested receiver's queue before
            the sender is paused until the receiver catches up (or is cut).
        max_total_pending: bytes queued for all receivers together above which the
            receivers with the most queued are cut (largest first), whatever the policy.
    """

    slow_consumer: SlowConsumerPolicy = SlowConsumerPolicy.DISCONNECT
    grace: float = 2.0
    pause_share: int = 256 * 1024
    max_total_pending: int = 512 * 2**20

    def __post_init__(self) -> None:
        if self.grace <= 0:
            raise ValueError(f"grace must be positive, got {self.grace}")
        if not isinstance(self.slow_consumer, SlowConsumerPolicy):
            object.__setattr__(self, "slow_consumer", SlowConsumerPolicy(self.slow_consumer))


_DISCONNECT: Final = SlowConsumerPolicy.DISCONNECT
#: Seconds between checks of the global cap while a receiver is congested.
TOTAL_CHECK_EVERY: Final = 0.25


class _Congestion:
    """A congested receiver: who added what since, who is paused, the grace timer."""

    __slots__ = ("shares", "paused", "released", "timer", "release_timer", "dropped")

    def __init__(self) -> None:
        self.shares: collections.Counter[str] = collections.Counter()
        self.paused: set[str] = set()
        #: senders paused once already and let go: not paused again for this receiver
        self.released: set[str] = set()
        self.timer: asyncio.TimerHandle | None = None
        self.release_timer: asyncio.TimerHandle | None = None
        self.dropped = 0


class Router:
    """Routes message groups between keyed connections (see the module docstring).

    Args:
        local: the key of the hub itself; groups targeted at it (or at one of
            `aliases`) go to `on_local`.
        on_local: receives the hub's own messages, decoded into ``(tag, body)`` pairs.
        on_unroutable: hears of groups that go nowhere (target not connected, or refused).
        introduce: called before a receiver gets its first message from a sender.
        check_send: asked before a group goes to other connections (permissions); a
            refused group goes to `on_unroutable` with the reason, and nowhere else.
        options: the slow-consumer policy.
    """

    def __init__(
        self,
        local: str,
        *,
        on_local: LocalCallback,
        on_unroutable: UnroutableCallback | None = None,
        introduce: IntroduceCallback | None = None,
        aliases: tuple[str, ...] = (),
        options: RouterOptions | None = None,
        check_send: SendCheck | None = None,
    ) -> None:
        self.local = local
        self._check_send = check_send
        self.options = options or RouterOptions()
        self._locals = {local, *aliases}
        self._on_local = on_local
        self._on_unroutable = on_unroutable
        self._introduce = introduce
        self._conns: dict[str, Connection] = {}
        self._keys: dict[Connection, str] = {}
        self._congested: dict[Connection, _Congestion] = {}
        self._total_check: asyncio.Handle | None = None
        #: whether broadcasts are also decoded for `on_local` (a hub with no handlers
        #: of its own leaves this off and decodes nothing it relays)
        self.deliver_broadcasts = True
        #: application messages routed (forwarded or delivered here) so far
        self.messages_routed = 0
        #: receivers disconnected as slow consumers, and messages dropped for receivers
        self.slow_consumers = 0
        self.messages_dropped = 0
        self._log = logger.bind(agent=local)

    # -- membership ------------------------------------------------------------------

    def add(self, key: str, conn: Connection) -> Connection | None:
        """Route `conn`'s messages from now on, under `key`; return the connection it
        replaces, if `key` was taken (the caller closes that one)."""
        previous = self._conns.get(key)
        if previous is not None:
            self._keys.pop(previous, None)
        self._conns[key] = conn
        self._keys[conn] = key
        conn.set_congestion_callback(self._congestion)
        conn.set_group_callback(lambda groups: self._route(key, conn, groups))
        return previous

    def remove(self, key: str, conn: Connection) -> bool:
        """Stop routing to `conn`; False if `key` is held by another connection now."""
        if self._conns.get(key) is not conn:
            return False
        del self._conns[key]
        self._keys.pop(conn, None)
        self._end_congestion(conn)
        for congestion in self._congested.values():
            if key in congestion.paused:  # nothing left to resume on the gone sender
                congestion.paused.discard(key)
        return True

    def connection(self, key: str) -> Connection | None:
        """The open connection under `key`, or None."""
        conn = self._conns.get(key)
        return conn if conn is not None and not conn.closed else None

    def __len__(self) -> int:
        return len(self._conns)

    # -- the hub's own sending -------------------------------------------------------

    def send(self, key: str, message: Any) -> bool:
        """Queue a message from the hub to the connection under `key`.

        Returns:
            False when `key` is not connected.

        Raises:
            EncodeError: the message cannot be encoded.
        """
        conn = self._conns.get(key)  # `connection(key)`, one call less: every answer
        if conn is None or conn.closed:
            return False
        try:
            conn.send_nowait(message, target=key, sender=self.local)
        except (ConnectionClosed, ProtocolError) as exc:  # closing, or too large for it
            self._log.debug("could not send to {}: {}", key, exc)
            return False
        return True

    def broadcast(self, tag: str, body: bytes) -> None:
        """Queue one encoded message from the hub to every connection."""
        for conn in list(self._conns.values()):
            if not conn.closed:
                conn.send_packed_nowait(self.local, None, tag, body)

    # -- routing ---------------------------------------------------------------------

    def _route(self, origin: str, source: Connection, groups: list[MessageGroup]) -> None:
        check = self._check_send
        for group in groups:
            self.messages_routed += group.count
            target = group.target
            if check is not None and target not in self._locals:
                refusal = check(origin, target)
                if refusal is not None:
                    self._unroutable(origin, source, target, group, refusal)
                    continue
            if target is None:
                self._broadcast(origin, source, group)
            elif target in self._locals:
                self._local(origin, source, target, group)
            else:
                self._direct(origin, source, target, group)

    def _broadcast(self, origin: str, source: Connection, group: MessageGroup) -> None:
        packed = group.tail()
        count = group.count
        introduce = self._introduce
        for key, conn in self._conns.items():
            if key == origin or conn.closed:
                continue
            if introduce is not None:
                introduce(key, origin)
            if conn.congested and not self._admit(origin, source, conn, len(packed), count):
                continue
            conn.forward_nowait(origin, None, count, packed)
        if self.deliver_broadcasts:
            self._local(origin, source, None, group)

    def _direct(self, origin: str, source: Connection, target: str, group: MessageGroup) -> None:
        conn = self._conns.get(target)
        if conn is None or conn.closed:
            self._unroutable(origin, source, target, group, "the agent is not connected")
            return
        if self._introduce is not None:
            self._introduce(target, origin)
        packed = group.tail()
        if conn.congested and not self._admit(origin, source, conn, len(packed), group.count):
            return
        conn.forward_nowait(origin, target, group.count, packed)

    def _unroutable(
        self, origin: str, source: Connection, target: str | None, group: MessageGroup, why: str
    ) -> None:
        self.messages_routed -= group.count
        if self._on_unroutable is not None:
            try:
                tags = [tag for tag, _ in group.pairs(source.options.limits)]
            except DecodeError as exc:
                source.frame_dropped(group.count, exc)
                return
            self._on_unroutable(origin, target, tags, why)

    def _local(
        self, origin: str, source: Connection, target: str | None, group: MessageGroup
    ) -> None:
        try:
            pairs = group.pairs(source.options.limits)
        except DecodeError as exc:
            source.frame_dropped(group.count, exc)
            return
        if group.malformed:
            source.drops["malformed"] += group.malformed
        if pairs:
            self._on_local(origin, target, pairs)

    # -- slow consumers --------------------------------------------------------------

    def _admit(
        self, origin: str, source: Connection, conn: Connection, size: int, count: int
    ) -> bool:
        """Whether to queue `size` more bytes for the congested `conn`."""
        congestion = self._congested.get(conn)
        if congestion is None:  # congested before it was routed: treat as new
            self._congestion(conn, True)
            congestion = self._congested[conn]
        if self.options.slow_consumer is not _DISCONNECT:
            congestion.dropped += count
            self.messages_dropped += count
            return False
        if conn.pending_bytes > conn.options.max_buffer:
            self._cut(conn, "its queue reached the limit")
            return False
        shares = congestion.shares
        shares[origin] += size
        if (
            shares[origin] > self.options.pause_share
            and origin not in congestion.paused
            and origin not in congestion.released
        ):
            congestion.paused.add(origin)
            source.pause_reading()
            if congestion.release_timer is None:
                # A paused sender's Pings wait unread too: let it go well before its
                # heartbeat timeout, and never later than the grace period.
                hold = min(self.options.grace, source.options.heartbeat_timeout / 2)
                loop = asyncio.get_running_loop()
                congestion.release_timer = loop.call_later(hold, self._release, conn)
        return True

    def _release(self, conn: Connection) -> None:
        congestion = self._congested.get(conn)
        if congestion is None:
            return
        congestion.release_timer = None
        self._resume_senders(congestion)

    def refuse_request(self, conn: Connection) -> bool:
        """Whether to leave a request from `conn` unanswered because its answers are not
        being read: a congested asker is cut as a slow consumer (True) instead of
        having more queued for it."""
        if not conn.congested or conn.closed:
            return False
        self._cut(conn, "it keeps asking without reading the answers")
        return True

    def _congestion(self, conn: Connection, congested: bool) -> None:
        if not congested:
            self._end_congestion(conn)
            return
        if conn in self._congested or conn.closed:
            return
        congestion = self._congested[conn] = _Congestion()
        if self._total_check is None:
            loop = asyncio.get_running_loop()
            self._total_check = loop.call_soon(self._check_total)
        if self.options.slow_consumer is _DISCONNECT:
            loop = asyncio.get_running_loop()
            congestion.timer = loop.call_later(self.options.grace, self._expired, conn)

    def _check_total(self) -> None:
        """While anyone is congested, keep what is queued in all under the global cap,
        cutting the largest queues first."""
        self._total_check = None
        if not self._congested:
            return
        pending = sorted(
            ((c.pending_bytes, c) for c in self._conns.values() if not c.closed),
            key=lambda item: item[0],
        )
        total = sum(size for size, _ in pending)
        cap = self.options.max_total_pending
        while total > cap and pending:
            size, conn = pending.pop()
            self._cut(conn, f"the playground holds {total} bytes for its agents, over {cap}")
            total -= size
        loop = asyncio.get_running_loop()
        self._total_check = loop.call_later(TOTAL_CHECK_EVERY, self._check_total)

    def _expired(self, conn: Connection) -> None:
        congestion = self._congested.get(conn)
        if congestion is None:
            return
        congestion.timer = None
        if conn.closed:  # gone meanwhile (a heartbeat timeout): nothing to cut
            self._end_congestion(conn)
        else:
            self._cut(conn, f"congested for more than {self.options.grace:g} s")

    def _cut(self, conn: Connection, why: str) -> None:
        key = self._keys.get(conn, "?")
        reason = (
            f"slow consumer: {conn.pending_bytes} bytes and {conn.pending_messages} "
            f"messages waiting, {why}"
        )
        self.slow_consumers += 1
        self._log.warning("disconnecting {}: {}", key, reason)
        self._end_congestion(conn)
        conn.fail(reason)

    def _end_congestion(self, conn: Connection) -> None:
        congestion = self._congested.pop(conn, None)
        if congestion is None:
            return
        if congestion.timer is not None:
            congestion.timer.cancel()
        if congestion.release_timer is not None:
            congestion.release_timer.cancel()
        self._resume_senders(congestion)
        if congestion.dropped and not conn.closed:
            conn.send_dropped(congestion.dropped)

    def _resume_senders(self, congestion: _Congestion) -> None:
        for key in congestion.paused:
            source = self._conns.get(key)
            if source is not None:
                source.resume_reading()
        congestion.released |= congestion.paused
        congestion.paused.clear()
