"""Messages the runtime exchanges for itself (directory, lookups, delivery failures).

They travel like application messages, under tags starting with ``ceylon.sys.``, which
agents handle internally and never pass to user handlers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Final

from transport import default_registry

from .peer import AgentDetail

__all__ = [
    "CHUNK_AGENTS",
    "CHUNK_BYTES",
    "SYSTEM_PREFIX",
    "AgentList",
    "Beat",
    "Bye",
    "Introduce",
    "Joined",
    "Left",
    "ListAgents",
    "PlaygroundStatus",
    "Probe",
    "Resolve",
    "Resolved",
    "Snapshot",
    "StatusQuery",
    "Undeliverable",
    "chunked",
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
    """The answer to `ListAgents` (in chunks; the last is `final`), or a further chunk of
    a `PlaygroundStatus`'s agents."""

    request: int
    agents: list[AgentDetail]
    final: bool = True


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
        drops: messages the playground dropped, by reason, and slow consumers cut.
        final: False when more of `agents` follow in `AgentList`s (large directories).
    """

    request: int
    playground: AgentDetail
    uptime: float
    agents: list[AgentDetail]
    messages_routed: int
    plugins: dict[str, dict[str, Any]]
    drops: dict[str, int] = dataclasses.field(default_factory=dict)
    final: bool = True


@dataclasses.dataclass
class Undeliverable:
    """A direct message could not be delivered (or a request was refused: then
    `request` is its number)."""

    target: str
    tag: str
    reason: str
    request: int = 0


# -- presence on NATS (see ceylon.presence) ---------------------------------------------


@dataclasses.dataclass
class Beat:
    """I am here (sent every heartbeat interval, and at once when joining).

    `playground` is the lease epoch of the active playground, 0 for everyone else;
    `session` counts the sender's reconnections to NATS (what was sent to it meanwhile
    may be lost: a new session of the playground makes its workers say what they hold).
    """

    agent: AgentDetail
    playground: int = 0
    session: int = 0


@dataclasses.dataclass
class Bye:
    """I am leaving."""

    agent: AgentDetail
    reason: str = ""


@dataclasses.dataclass
class Probe:
    """I just joined: the playground answers with its `Beat` and a `Snapshot` of who is
    here. An `observer` (``ceylon status``) only looks: it is not counted as present."""

    agent: AgentDetail
    observer: bool = False


#: Limits of one chunk of a directory listing: frames stay far below `max_frame_size`.
CHUNK_AGENTS: Final = 500
CHUNK_BYTES: Final = 2**20


def chunked(
    agents: list[AgentDetail], size_of: Callable[[AgentDetail], int]
) -> list[tuple[list[AgentDetail], bool]]:
    """Split `agents` into ``(chunk, final)`` pairs within `CHUNK_AGENTS` and `CHUNK_BYTES`
    (`size_of` gives an agent's encoded size); there is always at least one pair."""
    chunks: list[list[AgentDetail]] = [[]]
    used = 0
    for agent in agents:
        size = size_of(agent)
        if chunks[-1] and (len(chunks[-1]) >= CHUNK_AGENTS or used + size > CHUNK_BYTES):
            chunks.append([])
            used = 0
        chunks[-1].append(agent)
        used += size
    return [(chunk, i == len(chunks) - 1) for i, chunk in enumerate(chunks)]


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
    Beat,
    Bye,
    Probe,
):
    default_registry.register(_cls, tag=SYSTEM_PREFIX + _cls.__name__)
