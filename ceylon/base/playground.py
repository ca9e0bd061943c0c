"""`BasePlayGround`: the admin agent that listens, routes, and hosts plugins.

Agents connect to the playground; it authenticates each connection, keeps the directory
(`routing.Directory`), and is itself an agent whose ``@on`` handlers receive workers'
messages. Relaying is the transport's `Router`: frames are forwarded as bytes on the
read path, stamped with the sender authenticated for their connection, and nothing is
built for a type the playground has no handler for. A receiver that cannot keep up is
a slow consumer: disconnected after a grace period (or, if so configured, spared only
its own excess messages), so it never holds up the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ssl as _ssl
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from itertools import repeat
from operator import itemgetter
from typing import Any, TypeVar

import transport
from transport import Connection, DecodeError, EncodeError, PeerInfo, Router
from transport.natsbus import NatsBus, NatsOptions

from .. import system
from ..config import Settings, default_port
from ..errors import AgentNotFoundError, PluginError, WorkersMissingError
from ..lease import DEFAULT_TTL, Lease, LeaseLost
from ..link import NO_SENDERS
from ..natslink import NatsLink
from ..peer import AgentDetail, PeerMode
from ..permissions import Grant, Permissions
from ..plugin import Plugin
from ..routing import Directory
from .agent import BaseAgent

__all__ = ["BasePlayGround"]

_first = itemgetter(0)

JoinCallback = Callable[[AgentDetail], None]
Pair = tuple[str, bytes]
P = TypeVar("P", bound="Plugin[Any]")


class _RouterLink:
    """The playground's own `Link`: straight onto the agents' connections."""

    playground: AgentDetail | None = None  # it is the playground
    congested = False  # the router never makes the playground's own sends wait
    senders = NO_SENDERS

    def __init__(self, owner: BasePlayGround) -> None:
        self.owner = owner

    async def drain(self) -> None:
        return None

    def broadcast_nowait(self, message: Any) -> None:
        tag, body = self.owner._codec.encode(message)  # encoded once for everyone
        self.owner.router.broadcast(tag, body)

    def send_nowait(self, key: str, message: Any) -> bool | None:
        owner = self.owner
        detail = owner.directory.find(key)
        if detail is None:
            raise AgentNotFoundError(key)
        if detail.id == owner.id:
            owner._deliver_to_self(message)
        elif not owner.router.send(detail.id, message):
            raise AgentNotFoundError(key)
        return False

    async def send(self, key: str, message: Any) -> None:
        self.send_nowait(key, message)

    async def resolve(self, key: str) -> AgentDetail:
        detail = self.owner.directory.find(key)
        if detail is None:
            raise AgentNotFoundError(key)
        return detail

    async def agents(self) -> list[AgentDetail]:
        return [m.detail for m in self.owner.directory]

    async def status(self, timeout: float = 10.0) -> system.PlaygroundStatus:
        return self.owner.status()

    def hold(self, origin: str, paused: bool) -> None:
        conn = self.owner.router.connection(origin)
        if conn is not None:
            if paused:
                conn.pause_reading()
            else:
                conn.resume_reading()

    def dropped_upstream(self) -> dict[str, int]:
        return {}

    async def stop(self) -> None:
        await self.owner.finish()

    async def wait_stopped(self) -> None:
        return None


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
        heartbeat_interval, heartbeat_timeout: liveness, in seconds (defaults in
            `Settings`).
        settings: every setting at once (slow-consumer policy, limits...); the other
            arguments, when given, override its fields.
        client_ssl: the TLS context in-process workers of `play()` connect with.
        auth: per-token permissions (`ceylon.permissions`) instead of one shared token;
            in-process workers of `play()` then connect with its first token.
        nats: NATS server URLs (or `NatsOptions`): host the workspace on NATS instead of
            listening on TCP. Several playgrounds of one workspace may run: the holder
            of the lease (JetStream) is active, the others wait in standby.
        lease_ttl: seconds a standby waits for an active playground that stopped
            renewing its lease before it takes over (NATS only).
    """

    def __init__(
        self,
        name: str = "playground",
        port: int | None = None,
        host: str = "127.0.0.1",
        workspace: str = "default",
        token: str | None = None,
        ssl: _ssl.SSLContext | None = None,
        heartbeat_interval: float | None = None,
        heartbeat_timeout: float | None = None,
        *,
        settings: Settings | None = None,
        client_ssl: _ssl.SSLContext | None = None,
        role: str = "playground",
        auth: Permissions | None = None,
        nats: str | Sequence[str] | NatsOptions | None = None,
        lease_ttl: float = DEFAULT_TTL,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("mode", None)
        super().__init__(name, PeerMode.ADMIN, role, **kwargs)
        self.host = host
        self.requested_port = default_port() if port is None else port
        given: dict[str, Any] = {
            "workspace": workspace if settings is None or workspace != "default" else None,
            "token": token,
            "ssl": ssl,
            "heartbeat_interval": heartbeat_interval,
            "heartbeat_timeout": heartbeat_timeout,
        }
        if nats is not None:
            given["nats"] = nats if isinstance(nats, NatsOptions) else NatsOptions.parse(nats)
        self.settings = dataclasses.replace(
            settings or Settings(), **{k: v for k, v in given.items() if v is not None}
        )
        if self.settings.nats is not None and auth is not None:
            raise ValueError("on NATS, permissions are NATS's own: give no auth file")
        self.lease_ttl = lease_ttl
        self._nats: NatsLink | None = None
        self._lease: Lease | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._recounter: asyncio.Task[None] | None = None
        self._stopper: asyncio.Task[None] | None = None
        #: why it stopped by itself (another playground took over), if it did
        self.stop_reason: str | None = None
        self._finished_event = asyncio.Event()
        self.client_ssl = client_ssl
        if auth is not None and self.settings.token:
            raise ValueError("give a token or per-token permissions (auth), not both")
        self.auth = auth
        #: message tag -> the permission its sender needs (`require_permission`)
        self._required: dict[str, str] = {}
        self._refusals_logged: dict[str, set[str]] = {}  # agent id -> reasons logged
        self._server: transport.Server | None = None
        self.directory = Directory(self.details())
        self.router = Router(
            self.id,
            on_local=self._on_local,
            on_unroutable=self._on_unroutable,
            introduce=self._introduce,
            aliases=(self.name,),
            options=self.settings.router_options(),
            check_send=self._send_refusal if auth is not None else None,
        )
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self._join_callbacks: list[JoinCallback] = []
        self._leave_callbacks: list[JoinCallback] = []
        self._finished = False
        self._router_link = _RouterLink(self)
        self._link = self._router_link
        self.plugins: list[Plugin[Any]] = []
        self._sizes: dict[str, int] = {}  # agent id -> encoded size of its AgentDetail
        #: agents that joined with a resume secret from an earlier playground on this
        #: address (it restarted): admitted, not yet joined
        self._returning: set[str] = set()
        self.agents_returned = 0
        self._started_at: float | None = None

    # -- where -----------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port listened on (the real one once started with port 0)."""
        return self._server.port if self._server is not None else self.requested_port

    @property
    def address(self) -> str:
        """``host:port`` agents connect to (on NATS: the servers' URLs)."""
        if self.settings.nats is not None:
            return ",".join(self.settings.nats.servers)
        return f"{self.host}:{self.port}"

    def _address(self) -> str:
        return self.address if self.started else ""

    @property
    def workspace(self) -> str:
        return self.settings.workspace

    @property
    def started(self) -> bool:
        return self._server is not None or (self._nats is not None and not self._finished)

    @property
    def active(self) -> bool:
        """Whether it runs its plugins: always on TCP; on NATS once it holds the lease."""
        return self._server is not None or (self._nats is not None and self._nats.is_playground)

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Start listening (idempotent).

        Raises:
            OSError: the address cannot be bound.
        """
        if self._server is not None or self._nats is not None:
            return
        self._finished = False
        self._finished_event.clear()
        if self.settings.nats is not None:
            await self._start_on_nats(self.settings.nats)
            return
        self._start_dispatch()
        self.router.deliver_broadcasts = bool(self._table.by_type)
        self._started_at = time.monotonic()
        descriptors = transport.raise_descriptor_limit()  # before the server sizes itself
        room = f" (room for about {max(0, descriptors - 64)} connections)" if descriptors else ""
        kwargs = self.settings.transport_kwargs()
        if self.auth is not None:
            kwargs.pop("token")  # CEYLON_TOKEN, if set, is not one of them
            kwargs["tokens"] = self.auth.tokens
        self._server = await transport.serve(
            self._serve_agent,
            self.host,
            self.requested_port,
            identity=PeerInfo(self.id, self.name, self.role, {"extra_data": self.extra_data}),
            authorize=self._authorize,
            **kwargs,
        )
        self.directory.own = self.details()
        self._sizes[self.id] = len(self._codec.pack(self.directory.own))
        self._log.info("listening on {}{}", self.address, room)
        for plugin in self.plugins:
            await plugin.start()
        self._start_run_loops()

    async def cleanup(self) -> None:
        """`finish()`, by the name the tutorial's resource-management snippet uses (safe
        to call inside ``async with playground.play(...)``, which finishes too)."""
        await self.finish()

    async def finish(self) -> None:
        """End the session: say goodbye to every agent, stop listening, stop handlers."""
        if self._finished:
            return
        self._finished = True
        server, self._server = self._server, None
        if server is not None:
            await server.aclose()
        for plugin in self.plugins:  # on NATS, while the connection is up: journals flush
            try:
                await plugin.stop()
            except Exception:
                self._log.exception("plugin {} failed to stop", plugin.name)
        if self._nats is not None:
            await self._stop_on_nats()
        await self._stop_running()
        self._finished_event.set()
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
                token = self.auth.tokens[0] if self.auth else self.settings.resolved_token()
                settings = dataclasses.replace(self.settings, token=token, ssl=self.client_ssl)
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

    def add_plugin(self, plugin: P) -> P:
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
        if self._nats is None:
            self._router_link.send_nowait(target, message)
        elif target in (self.id, self.name):
            self._deliver_to_self(message)
        elif self._nats.send_nowait(target, message) is None:
            raise AgentNotFoundError(target)

    def broadcast_message_nowait(self, message: Any) -> None:
        """Queue a broadcast to every agent without waiting."""
        (self._nats or self._router_link).broadcast_nowait(message)

    def add_join_callback(self, on_join: JoinCallback, on_leave: JoinCallback) -> None:
        """Call `on_join`/`on_leave` (synchronously) as agents join and leave (plugins)."""
        self._join_callbacks.append(on_join)
        self._leave_callbacks.append(on_leave)

    # -- permissions -----------------------------------------------------------------

    def require_permission(self, message_type: type, permission: str) -> None:
        """Under a permissions file, take `message_type` only from agents granted
        `permission` (others are told it was not delivered, and why)."""
        self._required[self._codec.registry.register(message_type)] = permission

    def permits(self, agent_id: str, permission: str) -> bool:
        """Whether the connected agent `agent_id` may do `permission` (always, without
        a permissions file)."""
        if self.auth is None or agent_id == self.id:
            return True
        grant = self._grant(agent_id)
        return grant is not None and grant.permits(permission)

    def _grant(self, agent_id: str) -> Grant | None:
        conn = self.router.connection(agent_id)
        return None if conn is None or self.auth is None else self.auth.grant(conn.key)

    def _send_refusal(self, origin: str, target: str | None) -> str | None:
        """The router asks before forwarding a member's message to another member."""
        grant = self._grant(origin)
        if grant is None:
            return "not permitted: the sender is not connected"
        if target is None:
            return grant.refusal("broadcast")
        detail = self.directory.find(target)
        return None if detail is None else grant.send_refusal(detail.role)

    def _refusal(self, sender: AgentDetail, tag: str) -> str | None:
        permission = self._required.get(tag)
        if permission is None or self.auth is None:
            return None
        grant = self._grant(sender.id)
        if grant is None:
            refusal: str | None = f"not permitted: {permission} (the sender is not connected)"
        else:
            refusal = grant.refusal(permission)
        if refusal is not None:
            self._warn_refused(sender, tag, refusal)
        return refusal

    def _refused(
        self, origin: AgentDetail, pairs: list[tuple[str, bytes]]
    ) -> list[tuple[str, bytes]]:
        """`pairs` without what `origin` may not send here; it is told of each one."""
        kept = []
        for pair in pairs:
            refusal = self._refusal(origin, pair[0])
            if refusal is None:
                kept.append(pair)
                continue
            notice = system.Undeliverable(self.id, pair[0], refusal)
            self._tell(self.router.connection(origin.id), notice, origin.id)
        return kept

    def _warn_refused(self, origin: AgentDetail, what: str, why: str) -> None:
        """Log a refusal once per agent and reason: a member cannot flood the log."""
        seen = self._refusals_logged.setdefault(origin.id, set())
        if why not in seen and len(seen) < 100:
            seen.add(why)
            self._log.warning("refused {} from {}: {} (logged once)", what, origin.name, why)

    def _claim_refusal(self, peer: PeerInfo, key: bytes) -> str | None:
        """What a permissions file says of an authenticated agent's claims."""
        if self.auth is None:
            return None
        grant = self.auth.grant(key)
        if grant is None:
            return "authentication failed: unknown token"
        if peer.extra.get("observer") is True:  # claims no name: it only asks questions
            return grant.refusal("query")
        refusal = grant.claim_refusal(peer.id, peer.name, peer.role)
        if refusal is not None:
            return refusal
        if peer.extra.get("subscribe"):
            refusal = grant.refusal("query")
            if refusal is not None:
                return f"{refusal}: on_connect/on_disconnect handlers subscribe to joins"
        extra = peer.extra.get("extra_data")
        detail = AgentDetail(peer.id, peer.name, peer.role, "", dict(extra or {}))
        for plugin in self.plugins:
            refusal = plugin.join_refusal(detail, grant.refusal)
            if refusal is not None:
                return refusal
        return None

    def _authorize(self, peer: PeerInfo, key: bytes = b"") -> str | dict[str, Any] | None:
        resume = peer.extra.get("resume")
        refusal = (
            self._check_extra(peer)
            or self._claim_refusal(peer, key)
            or self.directory.refusal(peer.id, peer.name)
            or self.directory.reclaim_refusal(
                peer.id, resume if isinstance(resume, str) else None, time.monotonic()
            )
        )
        if refusal is not None:
            self._log.warning("refused agent {}: {}", peer.name, refusal)
            return refusal
        if peer.extra.get("observer") is True:
            return None  # never in the directory: nothing to resume
        if isinstance(resume, str) and not self.directory.issued(peer.id):
            self._returning.add(peer.id)  # its secret is an earlier playground's
        return {"resume": self.directory.admit(peer.id)}

    def _check_extra(self, peer: PeerInfo) -> str | None:
        """Handshake data is plain data, and not much of it."""
        extra_data = peer.extra.get("extra_data") or {}
        if not isinstance(extra_data, dict) or not all(isinstance(k, str) for k in extra_data):
            return "extra_data must be a map with text keys"
        size = len(self._codec.pack(extra_data))
        limit = self.settings.max_extra_bytes
        if size > limit:
            return f"extra_data is {size} bytes, over the limit of {limit}"
        return None

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
            self._returning.discard(detail.id)
            self._left(conn, detail)

    async def _serve_observer(self, conn: Connection, observer: AgentDetail) -> None:
        def answer(sender: str, target: str | None, pairs: list[tuple[str, bytes]]) -> None:
            for tag, body in pairs:
                if tag.startswith(system.SYSTEM_PREFIX):
                    self._answer(observer, conn, tag, body)

        self._log.debug("observer {} connected from {}", observer.name, observer.address)
        conn.set_message_callback(answer)
        await conn.wait_closed()

    def _joined(self, conn: Connection, detail: AgentDetail, subscribed: bool) -> None:
        refusal = self.directory.refusal(detail.id, detail.name)
        if refusal is not None:  # lost a race for the name since the handshake
            conn.start_close(refusal)
            return
        self.directory.join(detail, subscribed=subscribed)
        self._log.info("agent {} ({}) joined from {}", detail.name, detail.role, detail.address)
        if detail.id in self._returning:
            self._returning.discard(detail.id)
            self.agents_returned += 1
            self._log.info(
                "agent {} came back after a playground restart ({} agent(s) came back so far)",
                detail.name,
                self.agents_returned,
            )
        self._sizes[detail.id] = len(self._codec.pack(detail))
        if subscribed:
            for chunk, final in self._chunked(self.directory.details()):
                self._tell(conn, system.Snapshot(chunk, final))
        for agent_id in self.directory.subscribers(exclude=detail.id):
            self._tell(self.router.connection(agent_id), system.Joined(detail))
        previous = self.router.add(detail.id, conn)
        if previous is not None:
            previous.start_close("replaced by a new connection of the same agent")
        self.receive_membership(detail, self.settings.workspace, joined=True)
        for callback in self._join_callbacks:
            _call_safely(callback, detail, self._log)
        self._membership_changed()

    def _left(self, conn: Connection, detail: AgentDetail) -> None:
        if not self.router.remove(detail.id, conn):
            return  # replaced by a newer connection of the same agent, or refused
        self._sizes.pop(detail.id, None)
        self._refusals_logged.pop(detail.id, None)
        member, notify = self.directory.leave(detail.id, time.monotonic())
        reason = conn.close_reason or "connection lost"
        self._log.info("agent {} left: {}", detail.name, reason)
        for agent_id in notify:
            self._tell(self.router.connection(agent_id), system.Left(detail))
        if self._dispatcher is not None:
            self._dispatcher.forget_origin(detail.id)
        self.receive_membership(detail, self.settings.workspace, joined=False)
        for callback in self._leave_callbacks:
            _call_safely(callback, detail, self._log)
        self._membership_changed()

    def _tell(self, conn: Connection | None, notice: Any, target: str | None = None) -> None:
        """Queue a runtime notice; a connection that is closing just does not get it."""
        if conn is None or conn.closed:
            return
        try:
            conn.send_nowait(notice, target=target, sender=self.id)
        except (transport.ConnectionClosed, transport.ProtocolError) as exc:
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

    # -- what the router hands over --------------------------------------------------

    def _on_local(self, origin: str, target: str | None, pairs: list[tuple[str, bytes]]) -> None:
        detail = self.directory.find(origin)
        if detail is None:  # left while its messages were on the way
            return
        # The distinct tags, gathered and looked at in C (no generator to step): one
        # per frame, most of the time.
        if target is not None and any(
            map(str.startswith, set(map(_first, pairs)), repeat(system.SYSTEM_PREFIX))
        ):
            requests = [p for p in pairs if p[0].startswith(system.SYSTEM_PREFIX)]
            self.router.messages_routed -= len(requests)  # runtime, not application ones
            conn = self.router.connection(origin)
            for tag, body in requests:
                self._answer(detail, conn, tag, body)
            pairs = [p for p in pairs if not p[0].startswith(system.SYSTEM_PREFIX)]
        if self._required and pairs:
            pairs = self._refused(detail, pairs)
        if pairs:
            self.receive_messages(detail, pairs, direct=target is not None, origin=origin)

    def _on_unroutable(self, origin: str, target: str | None, tags: list[str], why: str) -> None:
        source = self.router.connection(origin)
        if target is None or why.startswith("not permitted"):
            sender = self.directory.find(origin)
            self._warn_refused(sender or AgentDetail(origin, origin), ", ".join(set(tags)), why)
        for tag in tags:
            self._tell(source, system.Undeliverable(target or "*", tag, why), origin)

    def _introduce(self, receiver: str, sender: str) -> None:
        if self.directory.introduce(receiver, sender):
            detail = self.directory.find(sender)
            if detail is not None:
                self._tell(self.router.connection(receiver), system.Introduce(detail))

    def _answer(self, origin: AgentDetail, conn: Connection | None, tag: str, body: bytes) -> None:
        if conn is None or conn.closed or self.router.refuse_request(conn):
            return
        try:
            request = self._codec.decode(tag, body)
        except DecodeError as exc:
            self._log.warning("dropped a runtime request from {}: {}", origin.name, exc)
            return
        if self.auth is not None and not isinstance(request, system.Resolve):
            grant = self.auth.grant(conn.key)
            refusal = "not permitted: query" if grant is None else grant.refusal("query")
            if refusal is not None:
                self._warn_refused(origin, tag, refusal)
                number = getattr(request, "request", 0)
                notice = system.Undeliverable(self.id, tag, refusal, number)
                self._tell(conn, notice, origin.id)
                return
        match request:
            case system.Resolve(request=number, key=key):
                found = self.directory.resolve(origin.id, key)
                self._tell(conn, system.Resolved(number, found), origin.id)
            case system.ListAgents(request=number):
                for chunk, final in self._chunked(self.directory.details()):
                    self._tell(conn, system.AgentList(number, chunk, final), origin.id)
            case system.StatusQuery(request=number):
                status = self.status()
                (status.agents, status.final), *rest = self._chunked(status.agents)
                status.request = number
                self._tell(conn, status, origin.id)
                for chunk, final in rest:
                    self._tell(conn, system.AgentList(number, chunk, final), origin.id)
            case _:
                self._log.warning("ignored a runtime message {} from {}", tag, origin.name)

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
        drops = self.stats().dropped
        if self.router.slow_consumers:
            drops["slow consumers disconnected"] = self.router.slow_consumers
        if self.router.messages_dropped:
            drops["dropped for slow consumers"] = self.router.messages_dropped
        return system.PlaygroundStatus(
            0, self.details(), uptime, agents, self.messages_routed, plugins, drops
        )

    @property
    def messages_routed(self) -> int:
        """Application messages routed or handled since the playground started (on
        NATS, which routes them itself: those it received)."""
        if self._nats is not None:
            return self.stats().received
        return self.router.messages_routed

    # -- on NATS ----------------------------------------------------------------------

    async def _start_on_nats(self, options: NatsOptions) -> None:
        """Join the workspace on NATS; hold the lease (waiting in standby for it while
        another playground holds it), then run the plugins."""
        self._start_dispatch()
        self._started_at = time.monotonic()
        bus = await NatsBus.open(options, self.settings.workspace, self.id)
        link = NatsLink(self, bus, self.settings, status=self.status, silent=True)
        self._nats = link
        self._link = link
        try:
            await link.start(wait_for_playground=False)
            lease = Lease(bus.client, self.settings.workspace, self.id, self.lease_ttl)
            try:
                await lease.open()
            except RuntimeError as exc:  # no JetStream: one playground, no standby
                self._log.warning("{}: this playground runs without a lease", exc)
                epoch = 1
            else:
                self._lease = lease
                self._log.info("on NATS at {} (workspace {}): waiting for the lease",
                               self.address, self.workspace)  # fmt: skip
                epoch = await lease.acquire()
                self._keeper = asyncio.get_running_loop().create_task(self._keep_lease(lease))
            self.directory.own = self.details()
            self._sizes[self.id] = len(self._codec.pack(self.directory.own))
            for plugin in self.plugins:
                await plugin.start()
        except BaseException:
            await self._stop_on_nats()
            raise
        link.become_playground(epoch)
        self._recounter = asyncio.get_running_loop().create_task(self._recount())
        self._log.info("active on NATS at {} (workspace {}, epoch {})", self.address,
                       self.workspace, epoch)  # fmt: skip
        for member in self.directory:  # heard of in standby: the plugins meet them now
            for callback in self._join_callbacks:
                _call_safely(callback, member.detail, self._log)
        self._membership_changed()
        self._start_run_loops()

    async def _recount(self) -> None:
        """NATS delivers at most once: now and then the plugins check what may have been
        lost without anybody reconnecting (a route between servers that failed, say)."""
        while True:
            await asyncio.sleep(self.settings.recount_interval)
            self.receive_lost(None)

    async def _keep_lease(self, lease: Lease) -> None:
        def new_epoch(epoch: int) -> None:
            if self._nats is not None:
                self._nats.become_playground(epoch)

        try:
            await lease.keep(new_epoch)
        except LeaseLost as exc:
            self.stop_soon(f"lease lost: {exc}")

    def lease_fresh(self) -> bool:
        """Whether this playground surely holds its lease now (always, without one):
        its journal writes only then."""
        return self._lease is None or self._lease.fresh()

    @property
    def nats_client(self) -> Any:
        """The nats-py client of a playground on NATS (None on TCP)."""
        return self._nats.bus.client if self._nats is not None else None

    @property
    def epoch(self) -> int:
        """On NATS: the lease epoch it is active under (0 in standby, and on TCP)."""
        return self._nats.epoch if self._nats is not None else 0

    def stop_soon(self, reason: str) -> None:
        """Stop, because another playground took over (the lease, or the journal)."""
        if self.stop_reason is not None or self._finished:
            return
        self.stop_reason = reason
        self._log.error("{}; this playground stops", reason)
        self._stopper = asyncio.get_running_loop().create_task(self.finish())

    async def wait_finished(self) -> None:
        """Wait until the playground has finished (`finish`, or `stop_soon`)."""
        await self._finished_event.wait()

    async def _stop_on_nats(self) -> None:
        recounter, self._recounter = self._recounter, None
        if recounter is not None:
            recounter.cancel()
            await asyncio.gather(recounter, return_exceptions=True)
        keeper, self._keeper = self._keeper, None
        if keeper is not None and keeper is not asyncio.current_task():
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
        lease, self._lease = self._lease, None
        if lease is not None:
            await lease.release()
        link = self._nats
        if link is not None:
            await link.stop()

    def receive_lost(self, detail: AgentDetail | None) -> None:
        if self.active:
            for plugin in self.plugins:
                try:
                    plugin.messages_lost(detail)
                except Exception:
                    self._log.exception("plugin {} failed on lost messages", plugin.name)

    def receive_membership(self, detail: AgentDetail, topic: str, *, joined: bool) -> None:
        if self._nats is not None:  # on TCP, _joined and _left keep the directory
            if joined:
                self.directory.join(detail, subscribed=False)
                self._log.info("agent {} ({}) joined", detail.name, detail.role)
                callbacks = self._join_callbacks
            else:
                self.directory.leave(detail.id, time.monotonic())
                self._log.info("agent {} left", detail.name)
                if self._dispatcher is not None:
                    self._dispatcher.forget_origin(detail.id)
                callbacks = self._leave_callbacks
            if self.active:
                for callback in callbacks:
                    _call_safely(callback, detail, self._log)
            self._membership_changed()
        super().receive_membership(detail, topic, joined=joined)

    # -- the playground's own messages ------------------------------------------------

    def _deliver_to_self(self, message: Any) -> None:
        specs = self._table.for_message(type(message))
        self._submit(specs, message, self.details(), int(time.time() * 1000), "")


def _call_safely(callback: JoinCallback, detail: AgentDetail, log: Any) -> None:
    try:
        callback(detail)
    except Exception:
        log.exception("membership callback {} failed", getattr(callback, "__name__", callback))
