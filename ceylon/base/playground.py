"""`BasePlayGround`: the admin agent that listens, routes, and hosts plugins.

Agents connect to the playground; it authenticates each connection, keeps the directory
(`routing.Directory`), relays messages (broadcast to every other agent, direct to one),
and is itself an agent whose ``@on`` handlers receive workers' messages. Relaying
happens on the read path: a message is packed once and queued on every target
connection, without building types the playground has no handler for. The sender of
every relayed message is the identity authenticated for its connection, never what the
frame claims. When a target falls behind, reading from the sender pauses until it
catches up, so a flood becomes backpressure instead of memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl as _ssl
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

import transport
from transport import (
    Connection,
    ConnectionClosed,
    DecodeError,
    EncodeError,
    MessageGroup,
    PeerInfo,
    ProtocolError,
)

from .. import system
from ..config import Settings, default_port
from ..errors import AgentNotFoundError, PluginError, WorkersMissingError
from ..link import Link
from ..peer import AgentDetail, PeerMode
from ..plugin import Plugin
from ..routing import Directory
from .agent import BaseAgent

__all__ = ["BasePlayGround"]

JoinCallback = Callable[[AgentDetail], None]


class _RouterLink(Link):
    """The playground's own way of sending: straight onto the agents' connections."""

    def __init__(self, playground: BasePlayGround) -> None:
        self.playground = playground
        self._congested: set[Connection] = set()  # paused when last written to

    @property
    def congested(self) -> bool:
        self._congested = {conn for conn in self._congested if conn.writing_paused}
        return bool(self._congested)

    async def drain(self) -> None:
        congested, self._congested = self._congested, set()
        for conn in congested:
            with contextlib.suppress(ConnectionClosed):
                await conn.drain()

    def broadcast_nowait(self, message: Any) -> None:
        playground = self.playground
        tag, body = playground._codec.encode(message)
        for conn in list(playground._conns.values()):
            if not conn.closed:
                conn.send_packed_nowait(playground.id, None, tag, body)
                if conn.writing_paused:
                    self._congested.add(conn)

    def send_nowait(self, key: str, message: Any) -> bool:
        playground = self.playground
        detail = playground.directory.find(key)
        if detail is None:
            raise AgentNotFoundError(key)
        if detail.id == playground.id:
            playground._deliver_to_self(message)
            return True
        conn = playground._conns.get(detail.id)
        if conn is None or conn.closed:
            raise AgentNotFoundError(key)
        conn.send_nowait(message, target=detail.id, sender=playground.id)
        if conn.writing_paused:
            self._congested.add(conn)
        return True

    async def send(self, key: str, message: Any) -> None:
        self.send_nowait(key, message)
        await self.drain()

    async def agents(self) -> list[AgentDetail]:
        return [m.detail for m in self.playground.directory]

    async def status(self, timeout: float = 10.0) -> system.PlaygroundStatus:
        return self.playground.status()


class BasePlayGround(BaseAgent):
    """A playground: listens for agents, routes their messages, runs plugins.

    Args:
        name: the playground's agent name.
        port: where to listen; 0 picks a free port (then read `port`). By default 8888,
            or ``CEYLON_PORT`` from the environment.
        host: interface to bind (loopback by default).
        workspace: agents must name the same workspace.
        token: shared secret agents must prove they know (``CEYLON_TOKEN`` otherwise).
        ssl: a server TLS context (`transport.server_context`).
        heartbeat_interval, heartbeat_timeout: liveness, in seconds.
        client_ssl: the TLS context in-process workers of `play()` connect with.
    """

    def __init__(
        self,
        name: str = "playground",
        port: int | None = None,
        host: str = "127.0.0.1",
        workspace: str = "default",
        token: str | None = None,
        ssl: _ssl.SSLContext | None = None,
        heartbeat_interval: float = 1.0,
        heartbeat_timeout: float = 5.0,
        *,
        client_ssl: _ssl.SSLContext | None = None,
        role: str = "playground",
        **kwargs: Any,
    ) -> None:
        kwargs.pop("mode", None)
        super().__init__(name, PeerMode.ADMIN, role, **kwargs)
        self.host = host
        self.requested_port = default_port() if port is None else port
        self.settings = Settings(
            workspace=workspace,
            token=token,
            ssl=ssl,
            heartbeat_interval=heartbeat_interval,
            heartbeat_timeout=heartbeat_timeout,
        )
        self.client_ssl = client_ssl
        self._server: transport.Server | None = None
        self.directory = Directory(self.details())
        self._conns: dict[str, Connection] = {}
        self._codec = transport.Codec()
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self._holds: set[asyncio.Task[None]] = set()
        self._join_callbacks: list[JoinCallback] = []
        self._leave_callbacks: list[JoinCallback] = []
        self._finished = False
        self._router = _RouterLink(self)
        self._link = self._router
        self.plugins: list[Plugin] = []
        #: application messages routed or handled since the playground started
        self.messages_routed = 0
        self._sizes: dict[str, int] = {}  # agent id -> encoded size of its AgentDetail
        self._started_at: float | None = None

    # -- where -----------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port listened on (the real one once started with port 0)."""
        return self._server.port if self._server is not None else self.requested_port

    @property
    def address(self) -> str:
        """``host:port`` agents connect to."""
        return f"{self.host}:{self.port}"

    def _address(self) -> str:
        return self.address if self._server is not None else ""

    @property
    def workspace(self) -> str:
        return self.settings.workspace

    @property
    def started(self) -> bool:
        return self._server is not None

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Start listening (idempotent).

        Raises:
            OSError: the address cannot be bound.
        """
        if self._server is not None:
            return
        self._finished = False
        self._start_dispatch(self._on_pressure)
        self._started_at = time.monotonic()
        self._server = await transport.serve(
            self._serve_agent,
            self.host,
            self.requested_port,
            identity=PeerInfo(self.id, self.name, self.role, {"extra_data": self.extra_data}),
            authorize=self._authorize,
            **self.settings.transport_kwargs(),
        )
        self.directory.own = self.details()
        self._sizes[self.id] = len(self._codec.pack(self.directory.own))
        self._log.info("listening on {}", self.address)
        for plugin in self.plugins:
            await plugin.start()
        self._start_run_loops()

    async def finish(self) -> None:
        """End the session: say goodbye to every agent, stop listening, stop handlers."""
        if self._finished:
            return
        self._finished = True
        server, self._server = self._server, None
        if server is not None:
            await server.aclose()
        for task in list(self._holds):
            task.cancel()
        if self._holds:
            await asyncio.wait(self._holds)
        for plugin in self.plugins:
            try:
                await plugin.stop()
            except Exception:
                self._log.exception("plugin {} failed to stop", plugin.name)
        await self._stop_running()
        self._log.info("playground {} finished", self.name)

    @contextlib.asynccontextmanager
    async def play(
        self, workers: Sequence[BaseAgent] = (), *, timeout: float = 30.0
    ) -> AsyncIterator[BasePlayGround]:
        """Listen, connect the given in-process workers over TCP, wait for all of them.

        On exit every worker is stopped and the playground finishes, whatever happened.

        Raises:
            WorkersMissingError: not every worker joined within `timeout` (names them).
        """
        await self.start()
        started: list[BaseAgent] = []
        try:
            if workers:
                settings = Settings(
                    workspace=self.settings.workspace,
                    token=self.settings.resolved_token(),
                    ssl=self.client_ssl,
                    heartbeat_interval=self.settings.heartbeat_interval,
                    heartbeat_timeout=self.settings.heartbeat_timeout,
                )
                address = (
                    "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host,
                    self.port,
                )

                async def join(worker: BaseAgent) -> None:
                    await worker.connect(address, settings=settings)
                    started.append(worker)

                await asyncio.gather(*(join(w) for w in workers))
                await self.wait_for_agents(names=[w.name for w in workers], timeout=timeout)
            yield self
        finally:
            await asyncio.gather(*(w.stop() for w in started), return_exceptions=True)
            await self.finish()

    # -- membership ------------------------------------------------------------------

    def add_plugin(self, plugin: Plugin) -> Plugin:
        """Host `plugin`: it attaches now, starts with the playground and stops with it."""
        if any(p.name == plugin.name for p in self.plugins):
            raise PluginError(plugin.name, "a plugin of that name is already hosted")
        plugin.attach(self)
        self.plugins.append(plugin)
        self.add_join_callback(plugin.agent_joined, plugin.agent_left)
        return plugin

    def send_message_nowait(self, target: str, message: Any) -> None:
        """Queue a direct message without waiting (for plugins reacting on the read path).

        Raises:
            AgentNotFoundError: no connected agent has that id or name.
        """
        self._router.send_nowait(target, message)

    def broadcast_message_nowait(self, message: Any) -> None:
        """Queue a broadcast to every agent without waiting."""
        self._router.broadcast_nowait(message)

    def add_join_callback(self, on_join: JoinCallback, on_leave: JoinCallback) -> None:
        """Call `on_join`/`on_leave` (synchronously) as agents join and leave (plugins)."""
        self._join_callbacks.append(on_join)
        self._leave_callbacks.append(on_leave)

    def _authorize(self, peer: PeerInfo) -> str | None:
        refusal = self.directory.refusal(peer.id, peer.name)
        if refusal is not None:
            self._log.warning("refused agent {}: {}", peer.name, refusal)
        return refusal

    async def _serve_agent(self, conn: Connection) -> None:
        peer = conn.peer
        address = conn.remote_address
        detail = AgentDetail(
            peer.id,
            peer.name,
            peer.role,
            f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address or ""),
            dict(peer.extra.get("extra_data") or {}),
        )
        if peer.extra.get("observer") is True:
            await self._serve_observer(conn, detail)
            return
        subscribed = bool(peer.extra.get("subscribe"))
        try:
            self._joined(conn, detail, subscribed)
            await conn.wait_closed()
        finally:
            self._left(conn, detail)

    async def _serve_observer(self, conn: Connection, observer: AgentDetail) -> None:
        build = self._codec.build

        def answer(groups: list[MessageGroup]) -> None:
            for group in groups:
                for tag, body in group.pairs():
                    if tag.startswith(system.SYSTEM_PREFIX):
                        self._answer(observer, conn, build, tag, body)

        self._log.debug("observer {} connected from {}", observer.name, observer.address)
        conn.set_message_callback(answer)
        await conn.wait_closed()

    def _joined(self, conn: Connection, detail: AgentDetail, subscribed: bool) -> None:
        refusal = self.directory.refusal(detail.id, detail.name)
        if refusal is not None:  # lost a race for the name since the handshake
            conn.start_close(refusal)
            return
        previous_conn = self._conns.get(detail.id)
        self.directory.join(detail, subscribed=subscribed)
        self._conns[detail.id] = conn
        if previous_conn is not None:
            previous_conn.start_close("replaced by a new connection of the same agent")
        self._log.info("agent {} ({}) joined from {}", detail.name, detail.role, detail.address)
        self._sizes[detail.id] = len(self._codec.pack(detail))
        if subscribed:
            for chunk, final in self._chunked(self.directory.details()):
                self._tell(conn, system.Snapshot(chunk, final))
        for agent_id in self.directory.subscribers(exclude=detail.id):
            self._tell(self._conns.get(agent_id), system.Joined(detail))
        conn.set_message_callback(lambda groups: self._route(detail, groups))
        self._agent_joined(detail, self.settings.workspace)
        for callback in self._join_callbacks:
            _call_safely(callback, detail, self._log)
        self._membership_changed()

    def _left(self, conn: Connection, detail: AgentDetail) -> None:
        if self._conns.get(detail.id) is not conn:
            return  # replaced by a newer connection of the same agent, or refused
        del self._conns[detail.id]
        self._sizes.pop(detail.id, None)
        member, notify = self.directory.leave(detail.id)
        reason = conn.close_reason or "connection lost"
        self._log.info("agent {} left: {}", detail.name, reason)
        for agent_id in notify:
            self._tell(self._conns.get(agent_id), system.Left(detail))
        if self._dispatcher is not None:
            self._dispatcher.forget_origin(detail.id)
        self._agent_left(detail, self.settings.workspace)
        for callback in self._leave_callbacks:
            _call_safely(callback, detail, self._log)
        self._membership_changed()

    def _tell(self, conn: Connection | None, notice: Any, target: str | None = None) -> None:
        """Queue a runtime notice; a connection that is closing just does not get it."""
        if conn is None or conn.closed:
            return
        try:
            conn.send_nowait(notice, target=target, sender=self.id)
        except (ConnectionClosed, ProtocolError) as exc:
            self._log.debug("could not tell {}: {}", conn.remote_address, exc)
        except EncodeError as exc:  # e.g. a plugin's figure: the asker must not pay for it
            self._log.warning("could not send {}: {}", type(notice).__name__, exc)

    def _membership_changed(self) -> None:
        for ready, future in list(self._waiters):
            if not future.done() and ready():
                future.set_result(None)

    async def wait_for_agents(
        self,
        count: int | None = None,
        role: str | None = None,
        timeout: float = 30.0,
        *,
        names: Iterable[str] | None = None,
    ) -> list[AgentDetail]:
        """Wait until `count` agents (of `role`, if given) or all `names` have joined.

        Returns:
            The matching agents present when the condition held.

        Raises:
            WorkersMissingError: the deadline passed; the error names who is missing.
        """
        wanted = set(names or ())
        if count is None:
            count = len(wanted) if wanted else 1

        def present() -> list[AgentDetail]:
            return [
                m.detail
                for m in self.directory
                if (role is None or m.detail.role == role)
                and (not wanted or m.detail.name in wanted)
            ]

        def ready() -> bool:
            return len(present()) >= count

        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = (ready, future)
        self._waiters.append(waiter)
        try:
            if ready():
                future.set_result(None)
            async with asyncio.timeout(timeout):
                await future
        except TimeoutError:
            have = present()
            if wanted:
                missing = wanted - {d.name for d in have}
            else:
                kind = f"agent(s) of role {role!r}" if role else "agent(s)"
                missing = {f"{count - len(have)} more {kind} (have {len(have)})"}
            raise WorkersMissingError(missing, timeout) from None
        finally:
            self._waiters.remove(waiter)
        return present()

    # -- routing ---------------------------------------------------------------------

    def _route(self, origin: AgentDetail, groups: list[MessageGroup]) -> None:
        now = int(time.time() * 1000)
        for group in groups:
            self.messages_routed += group.size
            target = group.target
            if target is None:
                self._relay_broadcast(origin, group, now)
            elif target == self.id or target == self.name:
                self._deliver_local(origin, group, now, direct=True)
            else:
                self._relay_direct(origin, target, group)

    def _introduce(self, conn: Connection, receiver: str, sender: AgentDetail) -> None:
        if self.directory.introduce(receiver, sender.id):
            self._tell(conn, system.Introduce(sender))

    def _repack(self, group: MessageGroup) -> list[tuple[bytes, bytes]]:
        """A group's application messages packed for relaying (runtime ones stay here)."""
        pack, tag_bytes = self._codec.pack, self._codec.tag_bytes
        return [
            (tag_bytes(tag), pack(body))
            for tag, body in group.pairs()
            if not tag.startswith(system.SYSTEM_PREFIX)
        ]

    def _relay_broadcast(self, origin: AgentDetail, group: MessageGroup, now: int) -> None:
        packed = self._repack(group)  # packed once, shared by every connection
        congested: list[Connection] = []
        for agent_id, conn in self._conns.items():
            if agent_id == origin.id or conn.closed:
                continue
            self._introduce(conn, agent_id, origin)
            conn.send_many_nowait(origin.id, None, packed)
            if conn.writing_paused:
                congested.append(conn)
        self._deliver_local(origin, group, now, direct=False)
        if congested:
            self._hold(origin.id, congested)

    def _relay_direct(self, origin: AgentDetail, target: str, group: MessageGroup) -> None:
        conn = self._conns.get(target)
        if conn is None or conn.closed:
            source = self._conns.get(origin.id)
            for tag, _ in group.pairs():
                notice = system.Undeliverable(target, tag, "the agent is not connected")
                self._tell(source, notice, origin.id)
            return
        self._introduce(conn, target, origin)
        conn.send_many_nowait(origin.id, target, self._repack(group))
        if conn.writing_paused:
            self._hold(origin.id, [conn])

    def _deliver_local(
        self, origin: AgentDetail, group: MessageGroup, now: int, *, direct: bool
    ) -> None:
        build = self._codec.build

        def on_system(tag: str, body: Any) -> None:
            self.messages_routed -= 1  # a runtime message, not an application one
            if direct:  # requests to the playground; broadcast ones are ignored
                self._answer(origin, self._conns.get(origin.id), build, tag, body)

        items = self._read_group(group, build, on_system, direct=direct, sender=origin.name)
        if items:
            self._submit_batch(items, origin, now, origin.id)

    def _answer(
        self, origin: AgentDetail, conn: Connection | None, build: Any, tag: str, body: Any
    ) -> None:
        if conn is None or conn.closed:
            return
        try:
            request = build(tag, body)
        except DecodeError as exc:
            self._log.warning("dropped a runtime request from {}: {}", origin.name, exc)
            return
        if isinstance(request, system.Resolve):
            found = self.directory.resolve(origin.id, request.key)
            self._tell(conn, system.Resolved(request.request, found), origin.id)
        elif isinstance(request, system.ListAgents):
            for chunk, final in self._chunked(self.directory.details()):
                self._tell(conn, system.AgentList(request.request, chunk, final), origin.id)
        elif isinstance(request, system.StatusQuery):
            status = self.status()
            (status.agents, status.final), *rest = self._chunked(status.agents)
            status.request = request.request
            self._tell(conn, status, origin.id)
            for chunk, final in rest:
                self._tell(conn, system.AgentList(request.request, chunk, final), origin.id)

    def _chunked(self, agents: list[AgentDetail]) -> list[tuple[list[AgentDetail], bool]]:
        sizes = self._sizes
        return system.chunked(agents, lambda agent: sizes.get(agent.id, 0))

    def status(self) -> system.PlaygroundStatus:
        """How the playground is doing: agents, messages routed, each plugin's figures."""
        uptime = time.monotonic() - self._started_at if self._started_at is not None else 0.0
        plugins: dict[str, dict[str, Any]] = {}
        for plugin in self.plugins:
            try:
                figures = dict(plugin.status())
                self._codec.pack(figures)  # what cannot travel is reported here, not sent
            except Exception:  # a plugin's bug must not cost the playground its answer
                self._log.exception("plugin {} failed to report its status", plugin.name)
                figures = {"error": "the plugin could not report its status"}
            plugins[plugin.name] = figures
        agents = [m.detail for m in self.directory]
        return system.PlaygroundStatus(
            0, self.details(), uptime, agents, self.messages_routed, plugins
        )

    def _hold(self, origin_id: str, congested: list[Connection]) -> None:
        source = self._conns.get(origin_id)
        if source is None:
            return
        source.pause_reading()

        async def release() -> None:
            try:
                for conn in congested:
                    with contextlib.suppress(ConnectionClosed):
                        await conn.drain()
            finally:
                source.resume_reading()

        task = asyncio.get_running_loop().create_task(release())
        self._holds.add(task)
        task.add_done_callback(self._holds.discard)

    def _on_pressure(self, origin: str, paused: bool) -> None:
        conn = self._conns.get(origin)
        if conn is not None:
            if paused:
                conn.pause_reading()
            else:
                conn.resume_reading()

    # -- the playground's own messages ------------------------------------------------

    def _deliver_to_self(self, message: Any) -> None:
        tag, body = self._codec.encode(message)
        specs = self._handlers_for(tag, self._codec.unpack(body))
        self._submit(specs, message, self.details(), int(time.time() * 1000), "")


def _call_safely(callback: JoinCallback, detail: AgentDetail, log: Any) -> None:
    try:
        callback(detail)
    except Exception:
        log.exception("membership callback {} failed", getattr(callback, "__name__", callback))
