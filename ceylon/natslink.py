"""An agent's link over NATS: the same agent API without the TCP hub.

Agents reach each other straight through NATS (`transport.natsbus`); the directory is
what each agent hears of the others (`ceylon.presence`): a `Beat` on joining and every
heartbeat interval, a `Bye` on leaving, silence for longer than the heartbeat timeout
for a death. The active playground beats with its lease epoch, answers a newcomer's
`Probe` with a `Snapshot` of who is here, and answers lookups and status queries as
the TCP playground does. A client's playground is the present agent with the highest
epoch; when one playground takes over from another, the client's link is "restored"
(`LinkOwner.receive_link_restored`), so that task workers announce what they hold.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Final

from loguru import logger

from transport import Codec, DecodeError
from transport.natsbus import DIRECT, PRESENCE, NatsBus

from . import system
from .config import Settings
from .errors import AgentNotFoundError, NotConnectedError
from .link import NO_SENDERS, LinkOwner
from .peer import AgentDetail
from .presence import Change, Presence
from .requests import Requests

__all__ = ["NatsLink"]

#: what a client waits for a playground at connect when none is heard of
REQUEST_TIMEOUT: Final = 10.0
_REQUESTS: Final = (system.Resolve, system.ListAgents, system.StatusQuery)
#: presence records decoded in this process, by body (they are only read)
_PRESENCE: dict[tuple[str, bytes], Any] = {}


def _plain_presence(record: Any, sender: str) -> bool:
    """Whether a presence record is one the sender may send: of itself, plain data (the
    codec builds what the fields say, whatever their types)."""
    match record:
        case system.Beat(agent=detail, playground=epoch, session=session):
            numbers = (epoch, session)
            if not all(type(n) is int and n >= 0 for n in numbers):
                return False
        case system.Bye(agent=detail, reason=reason):
            if type(reason) is not str:
                return False
        case system.Probe(agent=detail, observer=observer):
            if type(observer) is not bool:
                return False
        case _:
            return False
    return (
        type(detail) is AgentDetail
        and detail.id == sender
        and all(type(v) is str for v in (detail.name, detail.role, detail.address))
        and type(detail.extra_data) is dict
    )


class NatsLink:
    """The `Link` of an agent (or of a playground, `status` given) over NATS.

    Args:
        owner: the agent it carries.
        bus: its NATS connection (`NatsBus.open`).
        settings: heartbeats (interval and timeout) and the workspace.
        status: for a playground: what it says of itself (`StatusQuery`).
        epoch: for a playground: its lease epoch (it beats as the playground).
        silent: a playground in standby: it hears everything and says nothing until
            `become_playground`.
    """

    def __init__(
        self,
        owner: LinkOwner,
        bus: NatsBus,
        settings: Settings,
        *,
        status: Callable[[], system.PlaygroundStatus] | None = None,
        epoch: int = 0,
        silent: bool = False,
    ) -> None:
        self.owner = owner
        self.bus = bus
        self.settings = settings
        self.epoch = epoch
        self.silent = silent
        #: how many times this agent's NATS connection came back (see `system.Beat`)
        self.session = 0
        self._status = status
        self.presence = Presence(owner.id, settings.heartbeat_timeout)
        self._codec = Codec()
        self._playground: AgentDetail | None = None
        self._playground_session = 0
        self._had_playground = False
        self._requests = Requests()
        self._held: set[str] = set()  # senders whose messages are dropped for now
        self._verified: dict[str, int] = {}  # playgrounds the lease confirmed, by epoch
        self._verifying: set[str] = set()
        self._snapshots: dict[str, list[system.Snapshot]] = {}  # of one being verified
        self._probed: dict[str, float] = {}  # prober -> when it was last answered
        self._last_beat: dict[str, Any] = {}  # agent id -> the last beat taken from it
        self._tasks: set[asyncio.Task[None]] = set()
        self._heard_playground = asyncio.Event()
        self._beats: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()
        self._stopping = False
        self._log = logger.bind(agent=owner.name)

    # -- lifecycle -------------------------------------------------------------------

    @property
    def is_playground(self) -> bool:
        return self.epoch > 0

    def details(self) -> AgentDetail:
        owner = self.owner
        return AgentDetail(owner.id, owner.name, owner.role, "", dict(owner.extra_data))

    async def start(self, *, wait_for_playground: bool = True) -> None:
        """Subscribe, say who this agent is, and (a client) wait for the playground.

        Raises:
            NotConnectedError: no playground was heard of within the open timeout.
        """
        self.bus.on_reconnected = self._reconnected
        await self.bus.start(self._on_bus)
        self._announce(probe=True)
        self._beats = asyncio.get_running_loop().create_task(self._beat())
        if wait_for_playground and not self.is_playground:
            try:
                async with asyncio.timeout(self.settings.open_timeout):
                    await self._heard_playground.wait()
            except TimeoutError:
                await self.stop()
                raise NotConnectedError(
                    f"no playground of workspace {self.settings.workspace!r} answered on "
                    f"NATS within {self.settings.open_timeout:g} s"
                ) from None
            assert self._playground is not None
            self._log.info("connected to playground {} over NATS", self._playground.name)

    def become_playground(self, epoch: int) -> None:
        """Beat from now on as the playground of `epoch` (a standby taking over)."""
        self.epoch = epoch
        self.silent = False
        self._announce(probe=False)

    def _reconnected(self) -> None:
        """NATS is back, and what was sent meanwhile may be lost: this agent beats with
        a new session (the others learn of the loss from it), and hears of the loss
        itself: a client as a restored link (a task worker delivers again what it
        finished), a playground as `receive_lost` (a task playground asks its workers
        what they hold)."""
        if self._stopping:
            return
        self.session += 1
        self._log.info("NATS connection back (session {})", self.session)
        self.presence.touch(time.monotonic())  # silence while away proves nothing
        self._announce(probe=True)
        if self.is_playground:
            self.owner.receive_lost(None)
        elif not self.silent and self._playground is not None:
            self.owner.receive_link_restored()

    def _announce(self, *, probe: bool) -> None:
        if self.silent:
            return
        me = self.details()
        if self.owner.observer:  # it only asks: it is not one of the agents
            self.bus.send_presence_nowait(system.Probe(me, observer=True))
            return
        self.bus.send_presence_nowait(system.Beat(me, self.epoch, self.session))
        if probe:
            self.bus.send_presence_nowait(system.Probe(me))

    async def _beat(self) -> None:
        interval = self.settings.heartbeat_interval
        while True:
            await asyncio.sleep(interval)
            try:
                if not (self.owner.observer or self.silent):
                    beat = system.Beat(self.details(), self.epoch, self.session)
                    self.bus.send_presence_nowait(beat)
                if self.bus.connected:  # away from NATS, silence proves nothing
                    self._apply(self.presence.expire(time.monotonic()))
            except Exception:  # a bug must not stop the heartbeat
                self._log.exception("heartbeat failed; going on")

    async def stop(self) -> None:
        """Say goodbye and close; on_disconnect handlers fire for everyone known."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        for task in [*self._tasks, *([self._beats] if self._beats else [])]:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if not (self.owner.observer or self.silent):
            try:
                self.bus.send_presence_nowait(system.Bye(self.details(), "agent stopping"))
            except Exception as exc:  # the connection is gone already
                self._log.debug("could not say goodbye: {}", exc)
        await self.bus.close()
        self._requests.fail_all("the agent stopped")
        self.owner.receive_link_lost("agent stopping")
        self._apply(self.presence.clear("agent stopping"))
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    # -- receiving -------------------------------------------------------------------

    def _on_bus(self, kind: str, sender: str, pairs: list[tuple[str, bytes]]) -> None:
        if kind == PRESENCE:
            for tag, body in pairs:
                self._on_presence(sender, tag, body)
            return
        playground = self._playground
        if not (
            self.is_playground
            or (playground is not None and sender == playground.id)
            or sender in self._verifying
        ):
            # the runtime's own messages come from the playground, or to it: any other
            # sender's go to the agent, which takes them for types nobody handles
            self._hand_over(sender, pairs, kind)
            return
        start = 0
        for i, (tag, body) in enumerate(pairs):
            if tag.startswith(system.SYSTEM_PREFIX):
                if i > start:
                    self._hand_over(sender, pairs[start:i], kind)
                self._on_system(sender, tag, body)
                start = i + 1
        if start < len(pairs):
            self._hand_over(sender, pairs[start:] if start else pairs, kind)

    def _hand_over(self, sender: str, pairs: list[tuple[str, bytes]], kind: str) -> None:
        if sender in self._held:  # its messages wait by the thousand: NATS drops, so do we
            self.bus.drops["dropped: handlers behind"] += len(pairs)
            return
        detail = self.presence.find(sender) or AgentDetail(sender, sender)
        self.owner.receive_messages(detail, pairs, direct=kind == DIRECT, origin=sender)

    def _decode(self, tag: str, body: bytes) -> Any:
        try:
            return self._codec.decode(tag, body)
        except DecodeError as exc:
            self._log.warning("dropped an undecodable runtime message {}: {}", tag, exc.reason)
            return None

    def _on_presence(self, sender: str, tag: str, body: bytes) -> None:
        # Every agent of a process hears every beat: decoded once per process; and an
        # agent's beats are the same bytes beat after beat: the same record, taken here
        # as "still there" in one step (every agent hears every beat, every second).
        key = (tag, body)
        record = _PRESENCE.get(key)
        if record is not None and self._last_beat.get(sender) is record:
            self.presence.heard(sender, time.monotonic())
            return
        if record is None:
            record = self._decode(tag, body)
            if len(_PRESENCE) >= 4096:
                _PRESENCE.clear()
            _PRESENCE[key] = record
        if not _plain_presence(record, sender):  # only of itself, and plain data
            self.bus.drops["bad presence record"] += 1
            self._log.debug("dropped a presence record {} from {}", tag, sender)
            return
        now = time.monotonic()
        match record:
            case system.Beat(agent=detail, playground=epoch, session=session):
                if epoch and not self.is_playground and self._verified.get(sender) != epoch:
                    self._verify(detail, epoch, session)  # a playground? the lease says
                    epoch = 0
                known = detail.id in self.presence
                before = self.presence.session_of(detail.id)
                self._apply(self.presence.beat(detail, now, epoch, session))
                if not epoch or self._verified.get(sender) == epoch or self.is_playground:
                    self._last_beat[sender] = record  # the next same beat: one step
                if epoch and not self.is_playground:
                    self._playground_changed()
                elif known and session > before and self.is_playground:
                    self._log.info("agent {} reconnected to NATS", detail.name)
                    self.owner.receive_lost(detail)
            case system.Bye(agent=detail, reason=reason):
                self._apply(self.presence.bye(detail.id, reason or "left"))
            case system.Probe(agent=detail, observer=observer):
                if not observer:
                    self._apply(self.presence.beat(detail, now))
                if self.is_playground and self._may_answer(sender, now):
                    me = self.details()  # its beat first: the snapshot is taken from it
                    self.bus.send_presence_nowait(system.Beat(me, self.epoch, self.session))
                    for chunk, final in system.chunked([me, *self.presence], self._size):
                        self.bus.send_nowait(system.Snapshot(chunk, final), target=detail.id)

    def _may_answer(self, prober: str, now: float) -> bool:
        """A probe is answered once per heartbeat interval per prober: probes cannot make
        the playground an amplifier."""
        last = self._probed.get(prober)
        if last is not None and now - last < self.settings.heartbeat_interval:
            return False
        if len(self._probed) >= 10_000:
            self._probed.clear()
        self._probed[prober] = now
        return True

    def _verify(self, detail: AgentDetail, epoch: int, session: int) -> None:
        """Take `detail` for the playground of `epoch` once the lease says it holds it
        (any member may claim an epoch in a beat; only the lease holder has one)."""
        if detail.id in self._verifying:
            return
        self._verifying.add(detail.id)

        async def verify() -> None:
            try:
                holder = await self._lease_holder()
            finally:
                self._verifying.discard(detail.id)
            if holder is not None and holder != detail.id:
                self._snapshots.pop(detail.id, None)
                self.bus.drops["false playground claim"] += 1
                self._log.warning("agent {} claims to be the playground; the lease says "
                                  "otherwise", detail.name)  # fmt: skip
                return
            self._verified[detail.id] = epoch
            snapshots = self._snapshots.pop(detail.id, [])
            if detail.id in self.presence and not self._stopping:
                self._apply(self.presence.beat(detail, time.monotonic(), epoch, session))
                self._playground_changed()
                for snapshot in snapshots:
                    self._take_snapshot(snapshot)

        task = asyncio.get_running_loop().create_task(verify())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _lease_holder(self) -> str | None:
        """Who holds the workspace's lease (None: there is no lease to ask)."""
        from .lease import holder_of

        try:
            async with asyncio.timeout(self.settings.open_timeout):
                return await holder_of(self.bus.client, self.settings.workspace)
        except Exception as exc:  # no JetStream, no bucket: one playground, no lease
            self._log.debug("no lease to check a playground against: {}", exc)
            return None

    def _apply(self, changes: list[Change]) -> None:
        workspace = self.settings.workspace
        for change in changes:
            if not change.joined:
                self._held.discard(change.detail.id)
                self._verified.pop(change.detail.id, None)
                self._last_beat.pop(change.detail.id, None)
            verb = "joined" if change.joined else f"left: {change.reason}"
            self._log.debug("agent {} {}", change.detail.name, verb)
            self.owner.receive_membership(change.detail, workspace, joined=change.joined)
        if changes and not self.is_playground:
            self._playground_changed()

    def _playground_changed(self) -> None:
        current = self.presence.playground()
        previous = self._playground
        session = self.presence.session_of(current.id) if current is not None else 0
        if current == previous and session == self._playground_session:
            return
        self._playground, self._playground_session = current, session
        if current is None:
            if not self._stopping:
                self._log.warning("the playground {} is gone", previous.name if previous else "?")
            return
        self._heard_playground.set()
        if self._had_playground:
            if current == previous:
                self._log.info("playground {} reconnected to NATS", current.name)
            else:
                self._log.info("playground {} took over (epoch {})", current.name,
                               self.presence.epoch_of(current.id))  # fmt: skip
            self.owner.receive_link_restored()
        self._had_playground = True

    def _on_system(self, sender: str, tag: str, body: bytes) -> None:
        message = self._decode(tag, body)
        if message is None:
            return
        if isinstance(message, _REQUESTS):
            if self.is_playground:
                self._answer(sender, message)
            return
        playground = self._playground
        if playground is None or sender != playground.id:
            if isinstance(message, system.Snapshot) and sender in self._verifying:
                stash = self._snapshots.setdefault(sender, [])
                if len(stash) < 16:
                    stash.append(message)  # taken once the lease confirms the sender
            else:
                self._log.debug("ignored {} from {}, not the playground", tag, sender)
            return
        match message:
            case system.Snapshot():
                self._take_snapshot(message)
            case system.Resolved(request=number):
                self._requests.answered(number, message)
            case system.AgentList() | system.PlaygroundStatus():
                self._requests.chunk(message)
            case _:
                self._log.debug("ignored a runtime message {}", tag)

    def _take_snapshot(self, snapshot: system.Snapshot) -> None:
        if type(snapshot.agents) is not list:
            return
        now = time.monotonic()
        for detail in snapshot.agents:
            if type(detail) is AgentDetail and type(detail.name) is str:
                epoch = self.presence.epoch_of(detail.id)
                self._apply(self.presence.beat(detail, now, epoch))

    def _answer(self, asker: str, request: Any) -> None:
        match request:
            case system.Resolve(request=number, key=key):
                found = self.presence.find(key)
                if found is None and key in (self.owner.id, self.owner.name):
                    found = self.details()
                self.bus.send_nowait(system.Resolved(number, found), target=asker)
            case system.ListAgents(request=number):
                agents = [self.details(), *self.presence]
                for chunk, final in system.chunked(agents, self._size):
                    self.bus.send_nowait(system.AgentList(number, chunk, final), target=asker)
            case system.StatusQuery(request=number) if self._status is not None:
                status = self._status()
                (status.agents, status.final), *rest = system.chunked(status.agents, self._size)
                status.request = number
                self.bus.send_nowait(status, target=asker)
                for chunk, final in rest:
                    self.bus.send_nowait(system.AgentList(number, chunk, final), target=asker)

    def _size(self, agent: AgentDetail) -> int:
        # counted twice: a listing's chunks stay under half of NATS's 1 MiB default
        return 2 * len(self._codec.pack(agent))

    # -- the Link protocol -------------------------------------------------------------

    @property
    def playground(self) -> AgentDetail | None:
        return None if self.is_playground or self._stopping else self._playground

    senders = NO_SENDERS

    @property
    def congested(self) -> bool:
        return self.bus.congested

    async def drain(self) -> None:
        await self.bus.drain()

    def _check(self) -> None:
        if self._stopping:
            raise NotConnectedError(f"agent {self.owner.name!r} is not connected")

    def broadcast_nowait(self, message: Any) -> None:
        self._check()
        self.bus.send_nowait(message)

    def send_nowait(self, key: str, message: Any) -> bool | None:
        self._check()
        target = self.presence.find(key)
        if target is None:
            return None
        self.bus.send_nowait(message, target=target.id)
        return self.bus.congested

    async def send(self, key: str, message: Any) -> None:
        target = await self.resolve(key)
        self.bus.send_nowait(message, target=target.id)

    async def resolve(self, key: str) -> AgentDetail:
        self._check()
        found = self.presence.find(key)
        if found is not None:
            return found
        if self._playground is not None:  # heard of by the playground, not yet here
            reply = await self._request(system.Resolve(0, key))
            if reply.agent is not None:
                return reply.agent  # type: ignore[no-any-return]
        raise AgentNotFoundError(key)

    async def agents(self) -> list[AgentDetail]:
        self._check()
        return list(self.presence)

    async def status(self, timeout: float = REQUEST_TIMEOUT) -> system.PlaygroundStatus:
        if self._status is not None and self.is_playground:
            return self._status()
        reply = await self._request(system.StatusQuery(0), timeout)
        assert isinstance(reply, system.PlaygroundStatus)
        return reply

    async def _request(self, message: Any, timeout: float = REQUEST_TIMEOUT) -> Any:
        self._check()
        playground = self._playground
        if playground is None:
            raise NotConnectedError("no playground is present on NATS")
        with self._requests.opened(message) as future:
            self.bus.send_nowait(message, target=playground.id)
            async with asyncio.timeout(timeout):
                return await future

    def hold(self, origin: str, paused: bool) -> None:
        """The handlers are far behind `origin`'s messages: until they catch up, what
        it sends is dropped (counted), as NATS drops for a slow consumer; nothing else
        waits, presence and the other senders least of all."""
        if paused:
            self._held.add(origin)
        else:
            self._held.discard(origin)

    def dropped_upstream(self) -> dict[str, int]:
        return dict(self.bus.drops)
