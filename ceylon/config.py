"""Connection settings shared by playgrounds and agents; every default lives here."""

from __future__ import annotations

import dataclasses
import os
import ssl as _ssl
from typing import Any, Final

import transport
from transport.natsbus import NatsOptions

__all__ = ["DEFAULT_PORT", "Settings", "default_port", "parse_address"]

DEFAULT_PORT: Final = 8888


def default_port() -> int:
    """``CEYLON_PORT`` from the environment, else 8888 (the tutorials' port).

    Raises:
        ValueError: ``CEYLON_PORT`` is not a number.
    """
    value = os.environ.get("CEYLON_PORT")
    return int(value) if value else DEFAULT_PORT


def parse_address(address: str | tuple[str, int]) -> tuple[str, int]:
    """``"host:port"`` (or a pair) as a pair.

    Raises:
        ValueError: not ``host:port`` with a numeric port.
    """
    if isinstance(address, tuple):
        return address[0], int(address[1])
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {address!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


@dataclasses.dataclass(frozen=True)
class Settings:
    """How to reach (or be) a playground.

    Attributes:
        workspace: both ends must name the same one.
        token: shared secret; ``CEYLON_TOKEN`` is read when it is not given.
        ssl: a TLS context (server side for a playground, client side for an agent).
        heartbeat_interval, heartbeat_timeout: liveness, in seconds.
        max_frame_size: largest frame accepted or sent.
        open_timeout: deadline for connecting and the handshake.
        reconnect: an agent whose playground goes away connects again.
        reconnect_initial, reconnect_max: its capped exponential backoff, in seconds.
        slow_consumer: what a playground does with an agent that reads too slowly:
            ``"disconnect"`` it after `slow_consumer_grace` seconds, or ``"drop"`` what
            exceeds its queue (counted and reported to it).
        slow_consumer_grace: seconds an agent may stay over its queue limit.
        max_extra_bytes: largest `extra_data` (encoded) an agent may join with.
        max_total_pending: bytes a playground may hold queued for all its agents
            together; above it the agents with the most queued are cut first.
        max_pending_bytes, max_pending_messages: the queue limit of each connection.
        nats: reach the workspace over NATS (`NatsOptions`) instead of a TCP playground.
        recount_interval: on NATS, seconds between a playground's checks of what its
            workers hold (NATS delivers at most once: what was lost is handed out again).
    """

    workspace: str = "default"
    token: str | None = None
    ssl: _ssl.SSLContext | None = None
    heartbeat_interval: float = 1.0
    heartbeat_timeout: float = 5.0
    max_frame_size: int = transport.DEFAULT_MAX_FRAME_SIZE
    open_timeout: float = 10.0
    reconnect: bool = False
    reconnect_initial: float = 0.1
    reconnect_max: float = 5.0
    slow_consumer: str = "disconnect"
    slow_consumer_grace: float = 2.0
    max_extra_bytes: int = 16 * 1024
    max_total_pending: int = 512 * 2**20
    max_pending_bytes: int = 8 * 2**20
    max_pending_messages: int = 100_000
    nats: NatsOptions | None = None
    recount_interval: float = 30.0

    def __post_init__(self) -> None:
        if self.slow_consumer not in ("disconnect", "drop"):
            raise ValueError(
                f"slow_consumer must be 'disconnect' or 'drop', not {self.slow_consumer!r}"
            )

    def resolved_token(self) -> str | None:
        """The token, or ``CEYLON_TOKEN`` from the environment, or None."""
        return self.token if self.token is not None else (os.environ.get("CEYLON_TOKEN") or None)

    def transport_kwargs(self) -> dict[str, Any]:
        """What `transport.serve` and `transport.connect` both take from these settings."""
        return {
            "workspace": self.workspace,
            "token": self.resolved_token(),
            "ssl": self.ssl,
            "options": self.connection_options(),
            "max_frame_size": self.max_frame_size,
            "open_timeout": self.open_timeout,
        }

    def connection_options(self) -> transport.ConnectionOptions:
        """The per-connection options these settings make."""
        return transport.ConnectionOptions(
            heartbeat_interval=self.heartbeat_interval,
            heartbeat_timeout=self.heartbeat_timeout,
            max_pending_bytes=self.max_pending_bytes,
            max_pending_messages=self.max_pending_messages,
            max_buffer=max(64 * 2**20, 4 * self.max_pending_bytes),
        )

    def router_options(self) -> transport.RouterOptions:
        """The playground's slow-consumer policy."""
        return transport.RouterOptions(
            slow_consumer=transport.SlowConsumerPolicy(self.slow_consumer),
            grace=self.slow_consumer_grace,
            max_total_pending=self.max_total_pending,
        )
