"""One agent's link to its playground: connect, keep a directory, reconnect.

The session turns received message groups into handler calls (through the agent's
dispatcher), answers the runtime's own messages (directory, lookups), and, when the
playground goes away, fires on_disconnect and, if asked to, connects again with capped
exponential backoff and registers anew.
"""

from __future__ import annotations

import asyncio
from typing import Any

from loguru import logger

import transport
from transport import (
    Codec,
    Connection,
    ConnectionClosed,
    ConnectionClosedError,
    DecodeError,
    HandshakeError,
)

from . import system
from .config import Settings
from .errors import AgentNotFoundError, NotConnectedError, PermissionDenied
from .link import LinkOwner, Sender
from .peer import AgentDetail
from .requests import Requests

__all__ = ["PLAYGROUND_ORIGIN", "Session", "hello_extra"]

#: The dispatcher origin of everything a client agent receives (its one connection).
PLAYGROUND_ORIGIN = "playground"
REQUEST_TIMEOUT = 10.0
#: target keys whose senders are kept (keys are ids and names of agents known)
MAX_SENDERS = 4096


def hello_extra(agent: LinkOwner, resume: str | None = None) -> dict[str, Any]:
    """What an agent tells the playground about itself beyond id, name and role (and,
    reconnecting, the resume secret that proves it is the agent that held its id)."""
    extra = {"extra_data": dict(agent.extra_data), "subscribe": agent.wants_membership}
    if agent.observer:
        extra["observer"] = True
    if resume is not None:
        extra["resume"] = resume
    return extra


class Session:
    """The link of one client agent to one playground (a `Link`)."""

    def __init__(self, agent: LinkOwner, host: str, port: int, settings: Settings) -> None:
        self.agent = agent
        self.host = host
        self.port = port
        self.settings = settings
        self._playground: AgentDetail | None = None
        self._codec = Codec()
        self._drops_before: dict[str, int] = {}  # of connections already closed
        self.known: dict[str, AgentDetail] = {}
        self._names: dict[str, str] = {}
        #: `Link.senders`: the route of each target key sent to (a connection's
        #: `Route.send`), emptied whenever who is who may have changed
        self.senders: dict[str, Sender] = {}
        self._conn: Connection | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        self._requests = Requests()
        self._connected = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._snapshot = asyncio.Event()
        self._log = logger.bind(agent=agent.name)

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.closed

    @property
    def playground(self) -> AgentDetail | None:
        """The playground, while connected to it."""
        return self._playground if self.connected else None

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Connect for the first time; afterwards a supervisor keeps the link.

        Raises:
            HandshakeError: the playground refused this agent (or the other way round).
            OSError, TimeoutError: the playground could not be reached in time.
        """
        await self._open()
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())

    async def _open(self) -> None:
        agent = self.agent
        extra = hello_extra(agent, agent.resume_secret)
        identity = transport.PeerInfo(agent.id, agent.name, agent.role, extra)
        conn = await transport.connect(
            self.host,
            self.port,
            identity=identity,
            **self.settings.transport_kwargs(),
        )
        peer = conn.peer
        resume = peer.extra.get("resume")
        agent.resume_secret = resume if isinstance(resume, str) else None
        self._playground = AgentDetail(
            peer.id,
            peer.name,
            peer.role,
            f"{self.host}:{self.port}",
            dict(peer.extra.get("extra_data", {})),
        )
        self.known = {}
        self._names = {}
        self.senders = {}
        self._remember(self._playground)
        self._conn = conn
        self._snapshot.clear()
        conn.set_message_callback(self._on_messages)
        if agent.wants_membership:  # the directory comes right after the welcome
            try:
                await self._wait_snapshot(conn)
            except BaseException:
                self._conn = None
                conn.abort()
                self._forget_known(unannounced=peer.id)
                raise
        self._connected.set()
        self._log.info("connected to playground {} at {}:{}", peer.name, self.host, self.port)
        agent.receive_membership(self._playground, self.settings.workspace, joined=True)

    async def _wait_snapshot(self, conn: Connection) -> None:
        snapshot = asyncio.ensure_future(self._snapshot.wait())
        closed = asyncio.ensure_future(conn.wait_closed())
        try:
            async with asyncio.timeout(self.settings.open_timeout):
                await asyncio.wait((snapshot, closed), return_when=asyncio.FIRST_COMPLETED)
        finally:
            snapshot.cancel()
            closed.cancel()
        if not self._snapshot.is_set():
            reason = conn.close_reason or "connection lost"
            raise ConnectionClosedError(f"{reason} before the directory came", by_peer=True)

    async def _supervise(self) -> None:
        while True:
            conn = self._conn
            assert conn is not None
            await conn.wait_closed()
            self._lost(conn)
            if self._stopping or not self.settings.reconnect:
                return
            if not await self._reconnect():
                return
            self.agent.receive_link_restored()

    def _lost(self, conn: Connection) -> None:
        self._connected.clear()
        for reason, count in _upstream(conn).items():
            self._drops_before[reason] = self._drops_before.get(reason, 0) + count
        reason = conn.close_reason or "connection lost"
        if not self._stopping:
            self._log.warning("lost the playground: {}", reason)
        self._requests.fail_all(f"connection lost: {reason}")
        self.agent.receive_link_lost(reason)
        self._forget_known()

    def _forget_known(self, unannounced: str | None = None) -> None:
        """Forget every agent known, telling the on_disconnect handlers (of all but the
        `unannounced` one, whose join they never heard of)."""
        known = list(self.known.values())
        self.known = {}
        self._names = {}
        self.senders = {}
        for detail in known:
            if detail.id != unannounced:
                self.agent.receive_membership(detail, self.settings.workspace, joined=False)

    async def _reconnect(self) -> bool:
        delay = self.settings.reconnect_initial
        while not self._stopping:
            try:  # back off between attempts; stop() cuts the wait short
                async with asyncio.timeout(delay):
                    await self._stop_requested.wait()
                return False
            except TimeoutError:
                pass
            try:
                await self._open()
            except HandshakeError as exc:
                self._log.error("playground refused to take this agent back: {}", exc)
                return False
            except (OSError, TimeoutError, ConnectionClosed) as exc:
                delay = min(delay * 2, self.settings.reconnect_max)
                self._log.info("playground not reachable ({}); retrying in {:.1f} s", exc, delay)
                continue
            if self._stopping:  # stop() came while this attempt was under way
                assert self._conn is not None
                await self._conn.close("agent stopping")
            return True
        return False

    async def stop(self) -> None:
        """Say goodbye and stop; on_disconnect handlers fire for the playground."""
        self._stopping = True
        self._stop_requested.set()
        conn = self._conn
        if conn is not None:
            await conn.close("agent stopping")
        if self._supervisor is not None:
            await self._supervisor

    async def wait_stopped(self) -> None:
        """Wait until the session has ended for good."""
        if self._supervisor is not None:
            await asyncio.shield(self._supervisor)

    # -- receiving -------------------------------------------------------------------

    def _remember(self, detail: AgentDetail) -> None:
        if self.senders:  # a name may now be someone else's
            self.senders = {}
        old = self.known.get(detail.id)
        if old is not None:
            self._names.pop(old.name, None)
        self.known[detail.id] = detail
        self._names[detail.name] = detail.id

    def _forget(self, agent_id: str) -> AgentDetail | None:
        detail = self.known.pop(agent_id, None)
        if detail is not None:
            self._names.pop(detail.name, None)
            self.senders = {}
        return detail

    def _on_messages(self, sender: str, target: str | None, pairs: list[tuple[str, bytes]]) -> None:
        agent = self.agent
        direct = target is not None
        playground = self._playground
        if playground is not None and sender == playground.id:
            # Only the playground's own frames may carry runtime messages; anybody
            # else's are application messages no handler takes.
            start = 0
            for i, (tag, body) in enumerate(pairs):
                if tag.startswith(system.SYSTEM_PREFIX):
                    if i > start:
                        agent.receive_messages(
                            playground, pairs[start:i], direct=direct, origin=PLAYGROUND_ORIGIN
                        )
                    self._system(tag, body)
                    start = i + 1
            if start:
                pairs = pairs[start:]
                if not pairs:
                    return
        detail = self.known.get(sender)
        if detail is None:  # not introduced: should not happen, stay usable
            detail = AgentDetail(sender, sender)
        agent.receive_messages(detail, pairs, direct=direct, origin=PLAYGROUND_ORIGIN)

    def _system(self, tag: str, body: bytes) -> None:
        try:
            message = self._codec.decode(tag, body)
        except DecodeError as exc:
            self._log.warning("dropped an undecodable runtime message: {}", exc)
            return
        workspace = self.settings.workspace
        agent = self.agent
        match message:
            case system.Introduce(agent=detail):
                self._remember(detail)
            case system.Snapshot(agents=details, final=final):
                for detail in details:
                    if detail.id != agent.id and detail.id not in self.known:
                        self._remember(detail)
                        agent.receive_membership(detail, workspace, joined=True)
                if final:
                    self._snapshot.set()
            case system.Joined(agent=detail):
                if detail.id != agent.id:
                    self._remember(detail)
                    agent.receive_membership(detail, workspace, joined=True)
            case system.Left(agent=detail):
                if self._forget(detail.id) is not None or agent.wants_membership:
                    agent.receive_membership(detail, workspace, joined=False)
            case system.Resolved(request=request, agent=detail):
                if detail is not None:
                    # Known from now on: the playground will not introduce it again, and
                    # its messages may follow in this very batch.
                    self._remember(detail)
                self._requests.answered(request, message)
            case system.AgentList() | system.PlaygroundStatus():
                self._requests.chunk(message)
            case system.Undeliverable(target=target, tag=what, reason=reason, request=number):
                if number and self._requests.refused(number, PermissionDenied(reason)):
                    return
                self._forget(target)
                agent.receive_undeliverable(target, what, reason)
            case _:
                self._log.warning("ignored an unexpected runtime message {}", tag)

    # -- sending ---------------------------------------------------------------------

    def _connection(self) -> Connection:
        conn = self._conn
        if conn is None or conn.closed:
            raise self._not_connected()
        return conn

    def _not_connected(self) -> NotConnectedError:
        return NotConnectedError(f"agent {self.agent.name!r} is not connected to a playground")

    @property
    def congested(self) -> bool:
        conn = self._conn
        return conn is not None and conn.writing_paused

    def hold(self, origin: str, paused: bool) -> None:
        conn = self._conn
        if conn is not None:
            if paused:
                conn.pause_reading()
            else:
                conn.resume_reading()

    def dropped_upstream(self) -> dict[str, int]:
        drops = dict(self._drops_before)
        if self._conn is not None:
            for reason, count in _upstream(self._conn).items():
                drops[reason] = drops.get(reason, 0) + count
        return drops

    async def drain(self) -> None:
        await self._connection().drain()

    def broadcast_nowait(self, message: Any) -> None:
        self._connection().send_nowait(message, sender=self.agent.id)

    def _lookup(self, key: str) -> AgentDetail | None:
        target = self.known.get(key)
        if target is None:
            agent_id = self._names.get(key)
            if agent_id is not None:
                target = self.known.get(agent_id)
        return target

    def send_nowait(self, key: str, message: Any) -> bool | None:
        conn = self._conn  # `_connection()` and `_lookup()` inlined: this is every message
        if conn is None:
            conn = self._connection()  # raises
        target = self.known.get(key)
        if target is None:  # `_lookup`, inlined: sending by name is the common case
            target = self.known.get(self._names.get(key, key))
            if target is None:
                self._connection()  # a closed connection says so first
                return None
        send = conn.route(self.agent.id, target.id).send
        if len(self.senders) < MAX_SENDERS:
            self.senders[key] = send
        try:
            return send(message)
        except ConnectionClosed:  # `_connection()`'s check, paid only when it fails
            raise self._not_connected() from None

    async def send(self, key: str, message: Any) -> None:
        conn = self._connection()
        target = await self.resolve(key)
        await conn.send(message, target=target.id, sender=self.agent.id)

    async def resolve(self, key: str) -> AgentDetail:
        self._connection()
        target = self._lookup(key)
        if target is None:  # not known here (yet): ask the playground
            reply = await self._request(system.Resolve(0, key))
            if reply.agent is None:
                raise AgentNotFoundError(key)
            target = reply.agent
            self._remember(target)
        return target

    async def agents(self) -> list[AgentDetail]:
        if self.agent.wants_membership:
            self._connection()
            return list(self.known.values())
        reply = await self._request(system.ListAgents(0))
        return [a for a in reply.agents if a.id != self.agent.id]

    async def status(self, timeout: float = REQUEST_TIMEOUT) -> system.PlaygroundStatus:
        reply = await self._request(system.StatusQuery(0), timeout)
        assert isinstance(reply, system.PlaygroundStatus)
        return reply

    async def _request(self, message: Any, timeout: float = REQUEST_TIMEOUT) -> Any:
        conn = self._connection()
        assert self._playground is not None
        with self._requests.opened(message) as future:
            await conn.send(message, target=self._playground.id, sender=self.agent.id)
            async with asyncio.timeout(timeout):
                return await future


def _upstream(conn: Connection) -> dict[str, int]:
    """What a connection dropped below the agent layer, and what the playground did."""
    drops = dict(conn.drops)
    if conn.dropped_by_peer:
        drops["upstream"] = conn.dropped_by_peer
    return drops
