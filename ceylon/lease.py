"""Which of a workspace's playgrounds on NATS is active: the holder of a lease.

The lease is one key of a JetStream key-value bucket whose entries live `ttl` seconds.
A playground takes it by creating the key (which only succeeds while nobody holds it),
keeps it by updating it, revision on revision, every third of the TTL, and loses it when
somebody else holds it (its update finds another revision and the key cannot be made
again). A standby tries to create
the key every fifth of the TTL, so it takes over at most a TTL and a fifth after the
active one stopped renewing. The revision of the creation is the holder's *epoch*:
every later holder's is higher.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from loguru import logger

from .errors import CeylonError

if TYPE_CHECKING:
    from nats.aio.client import Client

__all__ = [
    "DEFAULT_TTL",
    "Lease",
    "LeaseLost",
    "holder_of",
    "jetstream_enabled",
    "nats_busy",
    "replicas_for",
]

DEFAULT_TTL: Final = 5.0
KEY: Final = "playground"


class LeaseLost(CeylonError):
    """This playground no longer holds the lease: another may be active now."""


def jetstream_enabled(client: Client) -> bool:
    """Whether the server this client reached says it runs JetStream."""
    info = getattr(client, "_server_info", None) or {}
    return bool(info.get("jetstream", True))


def nats_busy() -> tuple[type[Exception], ...]:
    """What NATS says while a cluster's JetStream is not ready yet (or is electing)."""
    import nats.errors
    import nats.js.errors

    return (
        nats.errors.NoRespondersError,
        nats.errors.TimeoutError,
        nats.js.errors.NoStreamResponseError,
        nats.js.errors.ServiceUnavailableError,
    )


def replicas_for(client: Client) -> int:
    """3 on a cluster of three servers or more (JetStream keeps the data on three), else
    1; the servers known are those given and those the cluster announced."""
    return 3 if len(client.servers) >= 3 else 1


async def holder_of(client: Client, workspace: str) -> str | None:
    """The id of the playground holding `workspace`'s lease, or None when nobody does.

    Raises:
        nats errors: no JetStream, or no lease bucket (no playground used one).
    """
    import nats.js.errors

    kv = await client.jetstream().key_value(f"ceylon_{workspace}_lease")
    try:
        entry = await kv.get(KEY)
    except nats.js.errors.KeyNotFoundError:
        return None
    return entry.value.decode() if entry.value else None


class Lease:
    """The lease of `workspace`, held (or waited for) by `holder`.

    Args:
        client: a connected nats-py client.
        workspace: the workspace (the bucket is ``ceylon_<workspace>_lease``).
        holder: who takes it (the playground's agent id).
        ttl: seconds an entry lives without renewal.
    """

    def __init__(self, client: Client, workspace: str, holder: str, ttl: float = DEFAULT_TTL):
        if ttl <= 0:
            raise ValueError(f"the lease TTL must be positive, got {ttl}")
        self.client = client
        self.bucket = f"ceylon_{workspace}_lease"
        self.holder = holder
        self.ttl = ttl
        self.epoch = 0
        self._revision = 0
        self._renewed = 0.0
        self._kv: Any = None
        self._log = logger.bind(agent="lease")

    async def open(self, replicas: int | None = None, patience: float = 20.0) -> None:
        """Find or make the bucket (a cluster just started may take `patience` seconds
        before JetStream answers).

        Raises:
            RuntimeError: JetStream is not enabled on the NATS servers.
        """
        if not jetstream_enabled(self.client):
            raise RuntimeError("standby playgrounds need JetStream on the NATS servers")
        deadline = time.monotonic() + patience
        while True:
            try:
                await self._open(replicas)
                return
            except nats_busy() as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"JetStream does not answer: {exc}") from None
                await asyncio.sleep(0.2)  # a backoff while the cluster elects its leaders

    async def _open(self, replicas: int | None) -> None:
        import nats.js.errors

        js = self.client.jetstream()
        try:
            self._kv = await js.key_value(self.bucket)
        except nats.js.errors.BucketNotFoundError:
            pass
        else:  # entries live as long as the bucket says, whatever this holder was told
            ttl = (await self._kv.status()).ttl
            if ttl and abs(ttl - self.ttl) > 1e-3:
                self._log.warning("the lease bucket keeps entries {:g} s; using that, not {:g} s",
                                  ttl, self.ttl)  # fmt: skip
                self.ttl = ttl
            return
        if replicas is None:
            replicas = replicas_for(self.client)
        self._kv = await js.create_key_value(
            bucket=self.bucket, ttl=self.ttl, history=1, replicas=replicas
        )

    async def acquire(self) -> int:
        """Wait until this holder has the lease; returns its epoch."""
        import nats.js.errors

        poll = self.ttl / 5
        waited = False
        while True:
            try:
                self._revision = await self._kv.create(KEY, self.holder.encode())
            except nats.js.errors.KeyWrongLastSequenceError:
                if not waited:
                    self._log.info("another playground is active; waiting in standby")
                    waited = True
            except (TimeoutError, nats.errors.Error) as exc:
                self._log.info("lease not reachable ({}); retrying", exc)
            else:
                self.epoch = self._revision
                self._renewed = time.monotonic()
                return self.epoch
            await asyncio.sleep(poll)

    async def keep(self, on_epoch: Callable[[int], None] | None = None) -> None:
        """Renew the lease until another holder has it (then raise `LeaseLost`).

        While the cluster cannot be reached (a server died, JetStream is electing a
        leader) it keeps trying: if the entry expired meanwhile and nobody took it, it
        takes it again, under a new epoch (`on_epoch` hears it); if somebody did, the
        lease is lost. What this holder wrote meanwhile is fenced by the journal.
        """
        import nats.js.errors

        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                self._revision = await self._kv.update(
                    KEY, self.holder.encode(), last=self._revision
                )
            except nats.js.errors.KeyWrongLastSequenceError:
                await self._take_again(on_epoch)
            except (TimeoutError, nats.errors.Error) as exc:
                silent = time.monotonic() - self._renewed
                self._log.warning("could not renew the lease for {:.1f} s ({})", silent, exc)
                continue
            self._renewed = time.monotonic()

    async def _take_again(self, on_epoch: Callable[[int], None] | None) -> None:
        import nats.js.errors

        try:
            self._revision = await self._kv.create(KEY, self.holder.encode())
        except nats.js.errors.KeyWrongLastSequenceError:
            raise LeaseLost("another playground took the lease") from None
        self.epoch = self._revision
        self._renewed = time.monotonic()
        self._log.warning("the lease expired while out of reach; taken again (epoch {})",
                          self.epoch)  # fmt: skip
        if on_epoch is not None:
            on_epoch(self.epoch)

    def fresh(self) -> bool:
        """Whether the lease was renewed less than a TTL ago (so nobody else can hold it)."""
        return bool(self.epoch) and time.monotonic() - self._renewed < self.ttl

    async def release(self) -> None:
        """Give the lease up (a standby may take it at once)."""
        if not self.epoch:
            return
        try:
            await self._kv.delete(KEY, last=self._revision)
        except Exception as exc:  # expired or taken meanwhile: nothing to give up
            self._log.debug("could not release the lease: {}", exc)
        self.epoch = 0
