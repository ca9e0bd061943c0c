"""Messages dropped at a receiver: counted by reason, and never silent.

A message can be dropped because its tag is not registered here ("unknown tag"), its
body does not fit the type ("wrong fields"), nobody here handles it ("no handler"), or
its frame was over a decode limit or malformed ("over limit", "malformed"). Each drop
is counted on the agent (`BaseAgent.stats()`); the first drop of each type and reason
in a process is also reported as a `MessageDroppedWarning`, which Python shows even
when the library's logging is off (the default when Ceylon is embedded).
"""

from __future__ import annotations

import collections
import dataclasses
import warnings
from typing import Final

__all__ = [
    "MALFORMED",
    "NO_HANDLER",
    "OVER_LIMIT",
    "UNKNOWN_TAG",
    "WRONG_FIELDS",
    "AgentStats",
    "DropCounter",
    "MessageDroppedWarning",
]

UNKNOWN_TAG: Final = "unknown tag"
WRONG_FIELDS: Final = "wrong fields"
NO_HANDLER: Final = "no handler"
OVER_LIMIT: Final = "over limit"
MALFORMED: Final = "malformed"

_reported: set[tuple[str, str]] = set()  # per process, as the warning says


class MessageDroppedWarning(UserWarning):
    """A received message was dropped; shown once per type and reason in a process."""


@dataclasses.dataclass(frozen=True)
class AgentStats:
    """What an agent sent and received, and what it dropped, by reason.

    Attributes:
        sent: application messages this agent sent (broadcasts count once).
        received: application messages that reached this agent.
        dropped: messages dropped here, by reason (see `ceylon.drops`).
        dropped_upstream: messages the playground dropped for this agent because it
            read too slowly (with the playground's "drop" slow-consumer policy).
    """

    sent: int
    received: int
    dropped: dict[str, int]
    dropped_upstream: int = 0


class DropCounter:
    """Counts drops by reason, warning on the first of each (type, reason) here."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()

    def record(self, type_name: str, reason: str, detail: str = "", count: int = 1) -> None:
        """Count `count` dropped messages of `type_name` for `reason`."""
        self.counts[reason] += count
        key = (type_name, reason)
        if key not in _reported:
            if len(_reported) >= 10_000:  # type names come from peers: stay bounded
                _reported.clear()
            _reported.add(key)
            text = f"dropped a {type_name} message: {reason}"
            warnings.warn(text + (f" ({detail})" if detail else ""), MessageDroppedWarning, 2)
