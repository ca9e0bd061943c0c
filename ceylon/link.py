"""The interface between an agent and the way it reaches the others."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Protocol

from .peer import AgentDetail

if TYPE_CHECKING:
    from .system import PlaygroundStatus

__all__ = ["NO_SENDERS", "Link", "LinkOwner", "Sender"]

#: Queues one message for one target without waiting; True when the caller should
#: then `drain` (see `Link.senders`).
Sender = Callable[[Any], bool]
#: The `senders` of a link that has none.
NO_SENDERS: Final[Mapping[str, Sender]] = MappingProxyType({})


class Link(Protocol):
    """How an agent reaches the others: a session for a client, the router for an admin.

    The ``*_nowait`` methods queue without waiting (the common case); `congested` (or
    what `send_nowait` returns) says whether the caller should then `drain`.
    """

    @property
    def playground(self) -> AgentDetail | None:
        """The playground a client is connected to; None for the playground itself."""
        ...

    @property
    def congested(self) -> bool:
        """Whether what was queued waits for the peer: the caller should `drain`."""
        ...

    @property
    def senders(self) -> Mapping[str, Sender]:
        """The straight way to targets sent to before, by the key they were sent to
        (id or name): what `send_nowait` does, for one target, without finding it again.
        A link may keep none; one it keeps is valid until the mapping no longer has it.
        A sender raises `transport.ConnectionClosed` once the connection is gone."""
        ...

    async def drain(self) -> None:
        """Wait until what was queued can be written."""

    def broadcast_nowait(self, message: Any) -> None:
        """Queue a message to every other agent."""

    def send_nowait(self, key: str, message: Any) -> bool | None:
        """Queue a direct message and say whether the caller should `drain` now (what
        `congested` would say); None, queueing nothing, if `key` is not known here
        (then use `send`)."""
        ...

    async def send(self, key: str, message: Any) -> None:
        """Send a direct message, asking the playground who `key` is if needed."""

    async def resolve(self, key: str) -> AgentDetail:
        """The agent whose id or name is `key` (asking the playground if needed).

        Raises:
            AgentNotFoundError: no connected agent has that id or name.
        """
        ...

    async def agents(self) -> list[AgentDetail]:
        """The other agents connected now."""
        ...

    async def status(self, timeout: float = 10.0) -> PlaygroundStatus:
        """What the playground reports of itself."""
        ...

    def hold(self, origin: str, paused: bool) -> None:
        """Pause (or release) reading from `origin`: its handlers are behind."""

    def dropped_upstream(self) -> dict[str, int]:
        """Drops counted below the agent layer (over-limit or malformed frames)."""
        ...

    async def stop(self) -> None:
        """Leave for good."""

    async def wait_stopped(self) -> None:
        """Wait until the link has ended for good."""


class LinkOwner(Protocol):
    """What a link needs of the agent it carries (`BaseAgent` is one): who it is, and
    the entry points it hands what arrives to."""

    id: str
    name: str
    role: str
    extra_data: dict[str, Any]
    #: the playground's proof-of-identity for reconnects (kept by the agent)
    resume_secret: str | None

    @property
    def observer(self) -> bool:
        """Whether it only asks the playground questions (``ceylon status``)."""
        ...

    @property
    def wants_membership(self) -> bool:
        """Whether it hears of every join and leave."""
        ...

    def receive_messages(
        self,
        sender: AgentDetail,
        messages: list[tuple[str, bytes]],
        *,
        direct: bool,
        origin: str,
    ) -> None:
        """Messages received from `sender`, bodies still encoded."""

    def receive_membership(self, detail: AgentDetail, topic: str, *, joined: bool) -> None:
        """An agent joined (or left)."""

    def receive_undeliverable(self, target: str, tag: str, reason: str) -> None:
        """A message it sent to `target` (``"*"``: a broadcast) went nowhere, and why."""

    def receive_link_lost(self, reason: str) -> None:
        """The link is gone."""

    def receive_link_restored(self) -> None:
        """The link reconnected."""

    def receive_lost(self, detail: AgentDetail | None) -> None:
        """Messages to and from `detail` (None: from everyone) may have been lost: its
        NATS connection (or this one's) went away and came back."""
