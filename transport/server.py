"""Listen for connections; run a handler per open connection; shut down in order."""

from __future__ import annotations

import asyncio
import ssl as _ssl
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from loguru import logger

from .client import make_identity, secret_from_token
from .codec import Codec
from .connection import Authorizer, Connection, ConnectionOptions
from .errors import ConnectionClosed, HandshakeError
from .framing import DEFAULT_MAX_FRAME_SIZE
from .handshake import Keyring, check_identity, keyring
from .protocol import HANDSHAKE, SERVER, Protocol
from .wire import PeerInfo

__all__ = ["Handler", "Server", "raise_descriptor_limit", "serve"]

Handler = Callable[[Connection], Awaitable[None]]

#: Unfinished handshakes a server holds at once (at least; a quarter of the descriptor
#: limit when that is more); past it the oldest is cut to make room. One source address
#: may hold half of them: past that its own oldest is cut, nobody else's.
MAX_HANDSHAKES = 256


def handshake_room() -> int:
    """How many unfinished handshakes to hold: a quarter of the descriptors, >= 256."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return MAX_HANDSHAKES
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return 16 * MAX_HANDSHAKES
    return max(MAX_HANDSHAKES, int(soft) // 4)


def raise_descriptor_limit() -> int:
    """Raise this process's soft limit of open files to its hard limit; return the
    limit now in force (each connection holds one descriptor)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return int(soft)


class Server:
    """A listening server. Create it with `serve()`.

    Each accepted connection gets a task that waits for the handshake (under
    `open_timeout`), then runs the handler; when the handler returns, the connection
    is closed. A handler that raises is logged and costs only its own connection.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        identity: PeerInfo,
        workspace: str,
        secret: bytes | Keyring | None,
        options: ConnectionOptions,
        codec_factory: Callable[[], Codec],
        max_frame_size: int,
        open_timeout: float,
        authorize: Authorizer | None,
    ) -> None:
        self._handler = handler
        self.identity = identity
        self.workspace = workspace
        self._secret = secret
        self.options = options
        self._codec_factory = codec_factory
        self._max_frame_size = max_frame_size
        self._open_timeout = open_timeout
        self._authorize = authorize
        self._server: asyncio.Server | None = None
        self._tasks: dict[asyncio.Task[None], Connection] = {}
        #: connections still in their handshake, oldest first (a dict as an ordered set)
        self._handshakes: dict[Connection, None] = {}
        self.max_handshakes = handshake_room()
        self.max_handshakes_per_address = self.max_handshakes // 2
        #: the same connections by source host, oldest first
        self._by_address: dict[str, dict[Connection, None]] = {}
        #: handshakes cut short to make room for newer ones
        self.handshakes_evicted = 0
        #: open connections whose handler is running
        self.connections: set[Connection] = set()
        self._closing = False

    @property
    def sockets(self) -> tuple[Any, ...]:
        return tuple(self._server.sockets) if self._server is not None else ()

    @property
    def port(self) -> int:
        """The bound port (the real one when asked to listen on port 0)."""
        return int(self.sockets[0].getsockname()[1])

    @property
    def host(self) -> str:
        return str(self.sockets[0].getsockname()[0])

    def _make_connection(self) -> Connection:
        protocol = Protocol(
            SERVER,
            self.identity,
            workspace=self.workspace,
            secret=self._secret,
            max_frame_size=self._max_frame_size,
            codec=self._codec_factory(),
            limits=self.options.limits,
        )
        connection = Connection(protocol, self.options, authorize=self._authorize)
        connection.on_made = self._made
        task = asyncio.get_running_loop().create_task(self._run(connection))
        self._tasks[task] = connection
        task.add_done_callback(self._tasks.pop)
        return connection

    def _admit_handshake(self, connection: Connection) -> float:
        """Make room for one more handshake (the oldest give way: a client that opens
        connections and says nothing cannot hold the descriptors); return its deadline,
        shorter the fuller the room is."""
        if len(self._handshakes) >= self.max_handshakes:
            self._evict(next(iter(self._handshakes)))
        self._handshakes[connection] = None
        load = len(self._handshakes) / self.max_handshakes
        return self._open_timeout * max(0.1, 1.0 - load)

    def handshakes_in_progress(self) -> int:
        """Connections accepted whose handshake has not finished yet."""
        return len(self._handshakes)

    def _made(self, connection: Connection) -> None:
        """The socket is there (after TLS, if any): count it against its address."""
        if connection.protocol.state is not HANDSHAKE:
            return
        room = self._by_address.setdefault(_host(connection), {})
        if len(room) >= self.max_handshakes_per_address:
            self._evict(next(iter(room)))
        room[connection] = None

    def _handshake_over(self, connection: Connection) -> None:
        self._handshakes.pop(connection, None)
        host = _host(connection)
        room = self._by_address.get(host)
        if room is not None and room.pop(connection, False) is None and not room:
            del self._by_address[host]

    def _evict(self, connection: Connection) -> None:
        self._handshake_over(connection)
        self.handshakes_evicted += 1
        if self.handshakes_evicted in (1, 10, 100, 1000) or self.handshakes_evicted % 10_000 == 0:
            logger.warning(
                "{} unfinished handshake(s) cut short to make room for new connections",
                self.handshakes_evicted,
            )
        connection.abort()

    async def _run(self, connection: Connection) -> None:
        deadline = self._admit_handshake(connection)
        try:
            async with asyncio.timeout(deadline):
                await connection.wait_open()
        except TimeoutError:
            logger.warning("handshake timed out after {:.1f} s", deadline)
            connection.abort()
            return
        except (HandshakeError, ConnectionClosed) as exc:
            logger.info("handshake failed: {}", exc)
            await connection.wait_closed()
            return
        finally:
            self._handshake_over(connection)
        self.connections.add(connection)
        try:
            await self._handler(connection)
        except ConnectionClosed:
            pass
        except Exception:
            logger.exception("connection handler failed")
        finally:
            self.connections.discard(connection)
            await connection.close("handler finished" if not self._closing else "server closing")

    async def start(
        self, host: str, port: int, ssl: _ssl.SSLContext | None, backlog: int = 4096
    ) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._make_connection,
            host,
            port,
            ssl=ssl,
            backlog=backlog,
            ssl_handshake_timeout=self._open_timeout if ssl is not None else None,
        )

    def close(self) -> None:
        """Stop accepting and start closing every connection (see `wait_closed()`)."""
        if self._closing:
            return
        self._closing = True
        if self._server is not None:
            self._server.close()
        for task, connection in list(self._tasks.items()):
            if connection in self.connections:
                connection.start_close("server closing")
            else:  # still in its handshake (maybe a TLS one that never reached us)
                connection.abort()
                task.cancel()

    async def wait_closed(self) -> None:
        """Wait until every connection is closed and every handler task has finished."""
        if self._tasks:
            done, pending = await asyncio.wait(
                set(self._tasks), timeout=self.options.close_timeout + 1.0
            )
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        if self._server is not None:
            await self._server.wait_closed()

    async def aclose(self) -> None:
        """`close()` then `wait_closed()`."""
        self.close()
        await self.wait_closed()

    async def serve_forever(self) -> None:
        """Serve until cancelled; on cancellation, shut down then re-raise."""
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            await self.aclose()

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _host(connection: Connection) -> str:
    address = connection.remote_address
    return str(address[0]) if isinstance(address, tuple) else str(address)


async def serve(
    handler: Handler,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    identity: PeerInfo | None = None,
    workspace: str = "default",
    token: str | bytes | None = None,
    tokens: Iterable[str | bytes] | None = None,
    ssl: _ssl.SSLContext | None = None,
    options: ConnectionOptions | None = None,
    codec_factory: Callable[[], Codec] = Codec,
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    open_timeout: float = 10.0,
    authorize: Authorizer | None = None,
    backlog: int = 4096,
) -> Server:
    """Start listening and return the `Server`.

    Args:
        handler: coroutine run with each connection once its handshake is done.
        host, port: where to listen; port 0 picks a free port (see `Server.port`).
        identity: who the server is, sent to clients in Welcome.
        token: shared secret clients must prove they know.
        tokens: several secrets instead; each client proves one of them (the
            authorizer hears which, by key id: `handshake.key_id`).
        ssl: a server TLS context (see `transport.tls.server_context`).
        open_timeout: deadline for a client's TLS handshake plus protocol handshake.
        authorize: called with each authenticated client; a returned string refuses it
            with that reason.
        backlog: connections the kernel queues before they are accepted; the default
            (4096, capped by the system) lets a thousand agents join at once, where the
            usual 100 would drop SYNs and cost each late agent a one-second retry.

    Raises:
        OSError: the address cannot be bound.
        ValueError: `identity` is too large for the handshake (see `check_identity`);
            `token` and `tokens` are both given; a token of `tokens` is empty or twice.
    """
    identity = identity or make_identity("server")
    check_identity(identity)
    secret: bytes | Keyring | None = secret_from_token(token)
    if tokens is not None:
        if secret is not None:
            raise ValueError("give token or tokens, not both")
        secret = keyring(secret_from_token(t) or b"" for t in tokens)
        if not secret:
            raise ValueError("tokens is empty: give at least one (or token=None for none)")
    server = Server(
        handler,
        identity=identity,
        workspace=workspace,
        secret=secret,
        options=options or ConnectionOptions(),
        codec_factory=codec_factory,
        max_frame_size=max_frame_size,
        open_timeout=open_timeout,
        authorize=authorize,
    )
    await server.start(host, port, ssl, backlog)
    return server
