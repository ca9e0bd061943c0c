"""What a playground plugin is: attach, react to agents joining and leaving, start, stop.

A plugin uses only the public playground API: instance handlers (``playground.on(T)``),
``send_message_nowait``/``send_message``/``broadcast_message``, the directory and the
membership callbacks it is given here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Generic, TypeVar

from .peer import AgentDetail

__all__ = ["Plugin"]

#: The playground a plugin is attached to (`BasePlayGround`, or a subclass it needs).
Host = TypeVar("Host")


class Plugin(Generic[Host]):
    """Base class of playground plugins; override what you need.

    Parametrized by the playground it works with, e.g. ``class Mine(Plugin["BasePlayGround"])``
    (a plain ``Plugin`` subclass works too), so this module need not know playgrounds.
    """

    #: the name ``ceylon playground --plugin NAME`` knows it by
    name: ClassVar[str] = "plugin"

    def __init__(self) -> None:
        self.playground: Host | None = None

    def attach(self, playground: Host) -> None:
        """Called once, when the plugin is added: register handlers here."""
        self.playground = playground

    def join_refusal(self, agent: AgentDetail, refusal: Callable[[str], str | None]) -> str | None:
        """Why `agent` may not join, or None; asked only under a permissions file.

        `refusal(permission)` is None when the agent's token grants `permission`, else
        the reason to give (see `ceylon.permissions`); the agent's address is not set yet.
        """
        return None

    def agent_joined(self, agent: AgentDetail) -> None:
        """An agent joined the playground (called on the read path: do not block)."""

    def agent_left(self, agent: AgentDetail) -> None:
        """An agent left the playground (called on the read path: do not block)."""

    def messages_lost(self, agent: AgentDetail | None) -> None:
        """Messages to and from `agent` (None: every agent) may have been lost: a NATS
        connection went away and came back (called on the read path: do not block)."""

    def status(self) -> Mapping[str, Any]:
        """Figures for ``ceylon status`` (numbers and short strings), e.g. tasks done."""
        return {}

    async def start(self) -> None:
        """The playground started listening."""

    async def stop(self) -> None:
        """The playground is finishing."""
