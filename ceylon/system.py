"""Messages the runtime exchanges for itself (directory, lookups, delivery failures).

They travel like application messages, under tags starting with ``ceylon.sys.``, which
agents handle internally and never pass to user handlers.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Final

from transport import default_registry

from .peer import AgentDetail

__all__ = [
    "SYSTEM_PREFIX",
    "AgentList",
    "Introduce",
    "Joined",
    "Left",
    "ListAgents",
    "PlaygroundStatus",
    "Resolve",
    "Resolved",
    "Snapshot",
    "StatusQuery",
    "Undeliverable",
]

SYSTEM_PREFIX: Final = "ceylon.sys."


@dataclasses.dataclass
class Snapshot:
    """Agents connected when a subscribing agent joins (in chunks; the last is `final`)."""

    agents: list[AgentDetail]
    final: bool = True


@dataclasses.dataclass
class Joined:
    agent: AgentDetail


@dataclasses.dataclass
class Left:
    agent: AgentDetail


@dataclasses.dataclass
class Introduce:
    """Who the sender of the messages that follow is."""

    agent: AgentDetail


@dataclasses.dataclass
class Resolve:
    """Ask the playground for the agent with this id or name."""

    request: int
    key: str


@dataclasses.dataclass
class Resolved:
    request: int
    agent: AgentDetail | None


@dataclasses.dataclass
class ListAgents:
    request: int


@dataclasses.dataclass
class AgentList:
    request: int
    agents: list[AgentDetail]


@dataclasses.dataclass
class StatusQuery:
    """Ask the playground for a `PlaygroundStatus`."""

    request: int


@dataclasses.dataclass
class PlaygroundStatus:
    """How a playground is doing: what ``ceylon status`` shows.

    Attributes:
        playground: the playground itself.
        uptime: seconds since it started listening.
        agents: the agents connected now (the playground not among them).
        messages_routed: application messages it has routed or handled since it started.
        plugins: each plugin's own figures, by plugin name (see `Plugin.status`).
    """

    request: int
    playground: AgentDetail
    uptime: float
    agents: list[AgentDetail]
    messages_routed: int
    plugins: dict[str, dict[str, Any]]


@dataclasses.dataclass
class Undeliverable:
    """A direct message could not be delivered."""

    target: str
    tag: str
    reason: str


default_registry.register(AgentDetail, tag="ceylon.AgentDetail")
for _cls in (
    Snapshot,
    Joined,
    Left,
    Introduce,
    Resolve,
    Resolved,
    ListAgents,
    AgentList,
    StatusQuery,
    PlaygroundStatus,
    Undeliverable,
):
    default_registry.register(_cls, tag=SYSTEM_PREFIX + _cls.__name__)
