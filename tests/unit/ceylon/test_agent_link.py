"""BaseAgent against a recording `Link`: what it asks of the link when it sends."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

import transport
from ceylon import BaseAgent, NotConnectedError
from ceylon.link import Sender
from ceylon.peer import AgentDetail


@dataclasses.dataclass
class Note:
    text: str


class RecordingLink:
    """The parts of `ceylon.link.Link` a send uses; `send_nowait` answers `answer`."""

    playground: AgentDetail | None = None

    def __init__(self, answer: bool | None) -> None:
        self.answer = answer
        self.calls: list[tuple[str, Any]] = []
        self.senders: dict[str, Sender] = {}

    @property
    def congested(self) -> bool:
        return bool(self.answer)

    def send_nowait(self, key: str, message: Any) -> bool | None:
        self.calls.append(("send_nowait", key))
        return self.answer

    async def send(self, key: str, message: Any) -> None:
        self.calls.append(("send", key))

    async def drain(self) -> None:
        self.calls.append(("drain", None))

    def dropped_upstream(self) -> dict[str, int]:
        return {}


@pytest.mark.parametrize(
    ("answer", "then"),
    [
        (False, []),  # queued, nothing waits
        (True, [("drain", None)]),  # queued behind a congested link: wait for it
        (None, [("send", "bob")]),  # not known here: the link asks who it is
    ],
)
async def test_send_message_drains_or_resolves_as_send_nowait_says(
    answer: bool | None, then: list[tuple[str, Any]]
) -> None:
    agent = BaseAgent("alice")
    link = RecordingLink(answer)
    agent._link = link  # type: ignore[assignment]  # what connect() would set
    await agent.send_message("bob", Note("hi"))
    assert link.calls == [("send_nowait", "bob"), *then]
    assert agent.stats().sent == 1


@pytest.mark.parametrize(("answer", "then"), [(False, []), (True, [("drain", None)])])
async def test_send_message_goes_straight_to_a_known_sender(
    answer: bool, then: list[tuple[str, Any]]
) -> None:
    agent = BaseAgent("alice")
    link = RecordingLink(None)
    sent: list[Any] = []

    def send(message: Any) -> bool:
        sent.append(message)
        return answer

    link.senders["bob"] = send
    agent._link = link  # type: ignore[assignment]
    await agent.send_message("bob", Note("hi"))
    assert sent == [Note("hi")]
    assert link.calls == then  # send_nowait is not asked
    assert agent.stats().sent == 1


async def test_a_sender_whose_connection_is_gone_says_not_connected() -> None:
    agent = BaseAgent("alice")
    link = RecordingLink(None)

    def send(message: Any) -> bool:
        raise transport.ConnectionClosedError("connection lost", by_peer=True)

    link.senders["bob"] = send
    agent._link = link  # type: ignore[assignment]
    with pytest.raises(NotConnectedError, match="not connected"):
        await agent.send_message("bob", Note("hi"))
    assert agent.stats().sent == 0
