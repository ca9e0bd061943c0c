"""What a playground plugin is: attach, react to agents joining and leaving, start, stop.

A plugin uses only the public playground API: instance handlers (``playground.on(T)``),
``send_message_nowait``/``send_message``/``broadcast_message``, the directory and the
membership callbacks it is given here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from .peer import AgentDetail

if TYPE_CHECKING:
    from .base.playground import BasePlayGround

__all__ = ["Plugin"]


class Plugin:
    """Base class of playground plugins; override what you need."""

    #: the name ``ceylon playground --plugin NAME`` knows it by
    name: ClassVar[str] = "plugin"

    def __init__(self) -> None:
        self.playground: BasePlayGround | None = None

    def attach(self, playground: BasePlayGround) -> None:
        """Called once, when the plugin is added: register handlers here."""
        self.playground = playground

    def agent_joined(self, agent: AgentDetail) -> None:
        """An agent joined the playground (called on the read path: do not block)."""

    def agent_left(self, agent: AgentDetail) -> None:
        """An agent left the playground (called on the read path: do not block)."""

    def status(self) -> Mapping[str, Any]:
        """Figures for ``ceylon status`` (numbers and short strings), e.g. tasks done."""
        return {}

    async def start(self) -> None:
        """The playground started listening."""

    async def stop(self) -> None:
        """The playground is finishing."""
