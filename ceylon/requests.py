"""Questions a client agent asks its playground, and their (possibly chunked) answers.

Shared by the TCP session and the NATS link: each request gets a number, the answer
names it; a directory listing may come in chunks, the last marked `final`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Iterator
from typing import Any

from . import system
from .errors import NotConnectedError

__all__ = ["Requests"]


class Requests:
    """The requests waiting for their answers."""

    def __init__(self) -> None:
        self._futures: dict[int, asyncio.Future[Any]] = {}
        self._partial: dict[int, Any] = {}  # request -> the answer so far (chunked)
        self._numbers = itertools.count(1)

    @contextlib.contextmanager
    def opened(self, message: Any) -> Iterator[asyncio.Future[Any]]:
        """Number `message` (its ``request`` field) and give the future its answer sets;
        forgotten on leaving the block, answered or not."""
        number = next(self._numbers)
        message.request = number
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._futures[number] = future
        try:
            yield future
        finally:
            self._futures.pop(number, None)
            self._partial.pop(number, None)

    def answered(self, request: int, reply: Any) -> None:
        future = self._futures.pop(request, None)
        if future is not None and not future.done():
            future.set_result(reply)

    def refused(self, request: int, error: BaseException) -> bool:
        """Fail request `request` with `error`; False if no such request waits."""
        future = self._futures.pop(request, None)
        if future is None:
            return False
        if not future.done():
            future.set_exception(error)
        return True

    def chunk(self, message: system.AgentList | system.PlaygroundStatus) -> None:
        """One chunk of a (possibly chunked) answer; the last completes the request."""
        reply: Any = message
        first = self._partial.pop(message.request, None)
        if first is not None:
            first.agents += message.agents
            reply = first
        if not message.final:
            if message.request in self._futures:
                self._partial[message.request] = reply
            return
        self.answered(message.request, reply)

    def fail_all(self, reason: str) -> None:
        """Every request waiting fails: the link is gone."""
        for future in self._futures.values():
            if not future.done():
                future.set_exception(NotConnectedError(reason))
        self._futures.clear()
        self._partial.clear()
