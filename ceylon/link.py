"""The interface between an agent and the way it reaches the others."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .peer import AgentDetail

if TYPE_CHECKING:
    from .system import PlaygroundStatus

__all__ = ["Link"]


class Link:
    """How an agent reaches the others; a session for a client, the router for an admin.

    The ``*_nowait`` methods queue without waiting (the common case); `congested` says
    whether the caller should then `drain`.
    """

    @property
    def congested(self) -> bool:
        return False

    async def drain(self) -> None:
        """Wait until what was queued can be written."""

    def broadcast_nowait(self, message: Any) -> None:
        raise NotImplementedError

    def send_nowait(self, key: str, message: Any) -> bool:
        """Queue a direct message; False if `key` is not known here (then use `send`)."""
        raise NotImplementedError

    async def send(self, key: str, message: Any) -> None:
        """Send a direct message, asking the playground who `key` is if needed."""
        raise NotImplementedError

    async def agents(self) -> list[AgentDetail]:
        raise NotImplementedError

    async def status(self, timeout: float = 10.0) -> PlaygroundStatus:
        """What the playground reports of itself."""
        raise NotImplementedError
