"""Request/reply between agents: what `BaseAgent.ask` sends and waits for.

An ask is a direct message like any other, under its own tag: an `AskRequest` wraps
the message's tag and encoded body with a request number, and the answer comes back
as an `AskReply` the same way. So asks and replies take the route, the ordering and
the limits of every direct message; the wrapped bodies are decoded by the agents at
either end, with their own registries, exactly as plain messages are.

`PendingAsks` is the asker's table of open requests: who was asked, and the future the
asker waits on. It does no I/O.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from typing import Final

from transport import default_registry

from .errors import AgentLeftError, PermissionDenied, RemoteHandlerError

__all__ = ["ASK_TAGS", "AskReply", "AskRequest", "PendingAsks"]

#: Why a reply carries no value (`AskReply.failure`).
RAISED: Final = "raised"
NO_HANDLER: Final = "no handler"
NO_REPLY: Final = "no reply"
UNDECODABLE: Final = "undecodable"
DENIED: Final = "denied"  # the playground's permissions refuse it: PermissionDenied


@dataclasses.dataclass
class AskRequest:
    """A message sent with `ask`: its tag and encoded body, and the request number."""

    request: int
    tag: str
    body: bytes


@dataclasses.dataclass
class AskReply:
    """The answer to an `AskRequest`: the handler's return value (tag and encoded body),
    or why there is none (`failure`, with the exception's type name and message)."""

    request: int
    tag: str = ""
    body: bytes = b""
    failure: str = ""
    error_type: str = ""
    error: str = ""


ASK_REQUEST: Final = default_registry.register(AskRequest, "ceylon.ask.Request")
ASK_REPLY: Final = default_registry.register(AskReply, "ceylon.ask.Reply")
#: The tags the agent layer handles itself (they never reach user handlers).
ASK_TAGS: Final = frozenset({ASK_REQUEST, ASK_REPLY})


@dataclasses.dataclass
class _Pending:
    target_id: str
    target: str  # as the asker named it
    type_name: str
    future: asyncio.Future[tuple[str, bytes]]


class PendingAsks:
    """Open asks, by request number."""

    def __init__(self) -> None:
        self._open: dict[int, _Pending] = {}
        self._numbers = itertools.count(1)

    def __len__(self) -> int:
        return len(self._open)

    def open(
        self, target_id: str, target: str, type_name: str
    ) -> tuple[int, asyncio.Future[tuple[str, bytes]]]:
        """A new request to `target_id`; the future gets the reply's (tag, body)."""
        number = next(self._numbers)
        future: asyncio.Future[tuple[str, bytes]] = asyncio.get_running_loop().create_future()
        self._open[number] = _Pending(target_id, target, type_name, future)
        return number, future

    def close(self, number: int) -> None:
        """Forget a request (answered, timed out or cancelled): a late reply is ignored."""
        self._open.pop(number, None)

    def answered(self, sender_id: str, reply: AskReply) -> bool:
        """Settle the request `reply` answers; False if none is open from that sender
        (late, or not from the agent asked)."""
        pending = self._open.get(reply.request)
        if pending is None or pending.target_id != sender_id or pending.future.done():
            return False
        del self._open[reply.request]
        if reply.failure == DENIED:
            pending.future.set_exception(PermissionDenied(reply.error))
        elif reply.failure:
            error = f"{reply.error_type}: {reply.error}" if reply.error_type else reply.error
            failure = RemoteHandlerError(pending.target, pending.type_name, error)
            pending.future.set_exception(failure)
        else:
            pending.future.set_result((reply.tag, reply.body))
        return True

    def left(self, agent_id: str) -> None:
        """The agent `agent_id` left: its open requests fail at once."""
        self.undeliverable(agent_id, None)

    def undeliverable(self, agent_id: str, error: BaseException | None) -> None:
        """Requests to `agent_id` cannot reach it: they fail with `error` (None: it left)."""
        for number, pending in list(self._open.items()):
            if pending.target_id == agent_id:
                self._fail(number, error or AgentLeftError(pending.target))

    def fail_all(self, error: BaseException) -> None:
        """Every open request fails with `error` (the link is gone)."""
        for number in list(self._open):
            self._fail(number, error)

    def _fail(self, number: int, error: BaseException) -> None:
        pending = self._open.pop(number)
        if not pending.future.done():
            pending.future.set_exception(error)
