"""Who a peer is: its mode and its public details."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

__all__ = ["AgentDetail", "PeerMode"]


class PeerMode(enum.Enum):
    """`ADMIN` listens for agents (a playground); `CLIENT` connects to one."""

    ADMIN = "admin"
    CLIENT = "client"


@dataclasses.dataclass(frozen=True)
class AgentDetail:
    """What every agent knows about another.

    Attributes:
        id: unique id of the agent (a hex string).
        name: its name, unique within the workspace.
        role: its role, e.g. "processor" or "participant".
        address: where the playground sees it connect from ("host:port"), or where a
            playground listens.
        extra_data: free-form data the agent declared.
    """

    id: str
    name: str
    role: str = ""
    address: str = ""
    extra_data: dict[str, Any] = dataclasses.field(default_factory=dict)
