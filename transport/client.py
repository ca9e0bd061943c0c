"""Open a client connection: TCP (or TLS), then the handshake, under one deadline."""

from __future__ import annotations

import asyncio
import ssl as _ssl
import uuid
from typing import Any

from .codec import Codec
from .connection import Connection, ConnectionOptions
from .framing import DEFAULT_MAX_FRAME_SIZE
from .handshake import check_identity
from .protocol import CLIENT, Protocol
from .wire import PeerInfo

__all__ = ["connect", "make_identity", "secret_from_token"]


def make_identity(
    name: str, role: str = "", extra: dict[str, Any] | None = None, id: str | None = None
) -> PeerInfo:
    """A `PeerInfo` with a fresh random id unless one is given."""
    return PeerInfo(id or uuid.uuid4().hex, name, role, dict(extra or {}))


def secret_from_token(token: str | bytes | None) -> bytes | None:
    """The HMAC key for a token given as text or bytes; None or empty means no auth."""
    if not token:
        return None
    return token.encode() if isinstance(token, str) else bytes(token)


async def connect(
    host: str,
    port: int,
    *,
    identity: PeerInfo | None = None,
    workspace: str = "default",
    token: str | bytes | None = None,
    ssl: _ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    options: ConnectionOptions | None = None,
    codec: Codec | None = None,
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    open_timeout: float = 10.0,
) -> Connection:
    """Connect to a server and complete the handshake.

    Args:
        host, port: where the server listens.
        identity: who this client is; defaults to an anonymous one.
        workspace: must match the server's.
        token: shared secret, when the server requires one.
        ssl: a client TLS context (see `transport.tls.client_context`).
        server_hostname: name to verify the certificate against; defaults to `host`.
        open_timeout: deadline in seconds for TCP, TLS and the handshake together.

    Returns:
        An open `Connection`; `connection.peer` is the server's identity.

    Raises:
        TimeoutError: the deadline passed.
        OSError: the TCP connection (or TLS handshake) failed.
        HandshakeError: the server refused us, or we refused the server.
        ConnectionClosed: the server closed during the handshake.
        ValueError: `identity` is too large for the handshake (see `check_identity`).
    """
    loop = asyncio.get_running_loop()
    identity = identity or make_identity("client")
    check_identity(identity)
    options = options or ConnectionOptions()
    protocol = Protocol(
        CLIENT,
        identity,
        workspace=workspace,
        secret=secret_from_token(token),
        max_frame_size=max_frame_size,
        codec=codec,
        limits=options.limits,
    )
    connection: Connection | None = None
    try:
        async with asyncio.timeout(open_timeout):
            _, connection = await loop.create_connection(
                lambda: Connection(protocol, options),
                host,
                port,
                ssl=ssl,
                server_hostname=(server_hostname or host) if ssl is not None else None,
            )
            await connection.wait_open()
    except BaseException:
        if connection is not None:
            connection.abort()
        raise
    return connection
