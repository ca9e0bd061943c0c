"""The meeting plugin trusts the authenticated sender, never a reply's ``participant`` field.

Real TCP: an in-process `SchedulingPlayground` on port 0 and participant agents, as in
``test_meetings.py``. The participants here hold each reply until a test-chosen step has
run, so a forgery surely reaches the playground before the genuine answers it imitates.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from ceylon.base.agent import BaseAgent
from ceylon.handlers import on
from ceylon.peer import AgentDetail, PeerMode
from ceylon.scheduling import (
    BookingProposal,
    BookingReply,
    CalendarReply,
    CalendarRequest,
    MeetingOutput,
    ParticipantAgent,
    SchedulingPlayground,
    TimeSlot,
)
from ceylon.scheduling.instance import parse_instance
from ceylon.scheduling.playground import REPLY_TIMEOUT
from ceylon.testing import Process

from ..conftest import BEAT_INTERVAL, BEAT_TIMEOUT, ROOT, seconds

DATA = ROOT / "tests" / "data" / "meetings"
INSTANCE = "tiny_1"
RAW = json.loads((DATA / "instances" / f"{INSTANCE}.json").read_text())
REFERENCE = json.loads((DATA / "reference.json").read_text())[INSTANCE]
NAMES = [p["name"] for p in RAW["participants"]]
FORGED = "FORGED-CONTENT-7f3a"  # put in the forged bodies: must never reach the log

Hold = Callable[[Any], Awaitable[None]]


class HeldParticipant(ParticipantAgent):
    """A participant that awaits `hold(message)` before answering a calendar request or a
    booking proposal (the test uses it to land an attack first)."""

    def __init__(self, name: str, available_slots: Any, hold: Hold | None = None) -> None:
        super().__init__(name, available_slots)
        self.hold = hold

    @on(CalendarRequest)
    async def handle_calendar(self, request: CalendarRequest, agent: AgentDetail) -> None:
        if self.hold is not None:
            await self.hold(request)
        await super().handle_calendar(request, agent)

    @on(BookingProposal)
    async def handle_booking(self, proposal: BookingProposal, agent: AgentDetail) -> None:
        if self.hold is not None:
            await self.hold(proposal)
        await super().handle_booking(proposal, agent)


class Impostor(HeldParticipant):
    """A real participant that answers under another participant's name."""

    def __init__(self, name: str, available_slots: Any, poses_as: str) -> None:
        super().__init__(name, available_slots)
        self.poses_as = poses_as

    @on(CalendarRequest)
    async def handle_calendar(self, request: CalendarRequest, agent: AgentDetail) -> None:
        free = self.free_windows(request.dates, request.earliest, request.latest)
        await self.send_message(agent.id, CalendarReply(request.request, self.poses_as, free))

    @on(BookingProposal)
    async def handle_booking(self, proposal: BookingProposal, agent: AgentDetail) -> None:
        slot = proposal.time_slot
        accepted = self.is_free(slot, proposal.min_gap, ignore=proposal.meeting_id)
        if accepted:
            self.bookings[proposal.meeting_id] = slot
        reply = BookingReply(proposal.meeting_id, self.poses_as, accepted)
        await self.send_message(agent.id, reply)


class Attack:
    """An agent of another role that is never asked anything: whenever a participant is
    asked (which `hold` hears of), it sends the playground forged replies naming every
    participant, waits until the plugin has dealt with them, then lets the answer go."""

    def __init__(self, mode: str, log: Warnings) -> None:
        self.mode = mode  # "busy": everyone is busy and refuses; "free": always free, accepts
        self.log = log
        self.agent = BaseAgent("mallory", mode=PeerMode.CLIENT, role="intruder")
        self.forged = 0
        self._strikes: dict[tuple[str, object], asyncio.Task[None]] = {}

    async def hold(self, message: Any) -> None:
        if isinstance(message, CalendarRequest):
            key: tuple[str, object] = ("calendar", message.request)
        else:
            key = ("booking", message.meeting_id)
        if key not in self._strikes:
            self._strikes[key] = asyncio.ensure_future(self._strike(message))
        await asyncio.shield(self._strikes[key])

    async def _strike(self, message: Any) -> None:
        playground = self.agent.connected_playground
        assert playground is not None
        forgeries: list[Any] = []
        if isinstance(message, CalendarRequest):
            free = (
                []
                if self.mode == "busy"
                else [TimeSlot(d, message.earliest, message.latest) for d in message.dates]
            )
            forgeries += [CalendarReply(message.request, name, free) for name in NAMES]
            kind = "calendar"
        else:
            accepted = self.mode == "free"
            forgeries += [
                BookingReply(message.meeting_id, name, accepted, FORGED) for name in NAMES
            ]
            kind = "booking"
        for forgery in forgeries:
            await self.agent.send_message(playground.id, forgery)
        self.forged += len(forgeries)
        await self.log.wait_for(f"ignored a {kind} reply from 'mallory'", seconds(5))
        await asyncio.sleep(seconds(0.1))  # the rest of the batch, behind the logged one


class Warnings(list[str]):
    """The warnings logged, as they come."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Event()

    def add(self, line: str) -> None:
        self.append(line)
        self.changed.set()

    async def wait_for(self, text: str, timeout: float) -> None:
        """Until a warning contains `text`, or `timeout` seconds (then the test's
        assertions on the warnings say what is missing)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while not any(text in line for line in self):
                    self.changed.clear()
                    await self.changed.wait()


@pytest.fixture
def warnings() -> Iterator[Warnings]:
    """The warnings ceylon logs during the test."""
    lines = Warnings()
    sink = logger.add(lambda m: lines.add(m.record["message"]), level="WARNING")
    logger.enable("ceylon")
    try:
        yield lines
    finally:
        logger.disable("ceylon")
        logger.remove(sink)


def people(hold: Hold | None = None, impostor: str | None = None) -> list[ParticipantAgent]:
    out: list[ParticipantAgent] = []
    for index, person in enumerate(RAW["participants"]):
        slots = [[w["date"], w["start"], w["end"]] for w in person["available"]]
        if person["name"] == impostor:
            out.append(Impostor(person["name"], slots, NAMES[(index + 1) % len(NAMES)]))
        else:
            out.append(HeldParticipant(person["name"], slots, hold))
    return out


async def plan(workers: list[BaseAgent]) -> dict[str, MeetingOutput]:
    instance = parse_instance(RAW)
    playground = SchedulingPlayground(
        port=0, constraints=instance.constraints, time_limit=0.5, progress=lambda _: None,
        heartbeat_interval=BEAT_INTERVAL, heartbeat_timeout=BEAT_TIMEOUT,
    )  # fmt: skip
    async with playground.play(workers=workers, timeout=seconds(20)):
        return await playground.meeting_plugin.plan(instance.meetings)


def validate(outputs: dict[str, MeetingOutput], tmp_path: Path) -> dict[str, Any]:
    """Check the schedule with the shared validator (run as a program, never imported)."""
    entries: list[dict[str, Any]] = []
    for output in outputs.values():
        slot = output.time_slot
        if output.scheduled and slot is not None:
            entries.append({"meeting": output.name, "scheduled": True, "date": slot.date,
                            "start": slot.start_time, "end": slot.end_time,
                            "participants": output.participants})  # fmt: skip
        else:
            entries.append({"meeting": output.name, "scheduled": False, "reason": output.error})
    solution = tmp_path / "solution.json"
    solution.write_text(json.dumps({"schedule": entries}))
    instance = DATA / "instances" / f"{INSTANCE}.json"
    check = Process([sys.executable, str(DATA / "validate.py"), str(instance), str(solution),
                     "--json"])  # fmt: skip
    code = check.wait(timeout=seconds(60))
    report = check.output()
    assert code == 0, report
    result: dict[str, Any] = json.loads(report)
    return result


def scheduled(outputs: dict[str, MeetingOutput]) -> int:
    return sum(o.scheduled for o in outputs.values())


@pytest.mark.parametrize("mode", ["busy", "free"])
async def test_forged_replies_from_an_agent_not_asked_change_nothing(
    tmp_path: Path, warnings: Warnings, mode: str
) -> None:
    baseline = await plan(list(people()))
    assert validate(baseline, tmp_path)["valid"]
    warnings.clear()

    attack = Attack(mode, warnings)
    started = time.monotonic()
    outputs = await plan([*people(attack.hold), attack.agent])
    elapsed = time.monotonic() - started

    result = validate(outputs, tmp_path)
    assert result["valid"], result
    assert scheduled(outputs) == scheduled(baseline) == len(RAW["meetings"])
    assert result["weighted"] == REFERENCE["weighted"]
    assert elapsed < REPLY_TIMEOUT  # nobody's answer was waited out
    assert attack.forged >= 2 * len(NAMES)  # calendars and at least one booking round

    ignored = [line for line in warnings if "'mallory'" in line]
    assert sum("ignored a calendar reply from 'mallory'" in line for line in ignored) == 1
    assert sum("ignored a booking reply from 'mallory'" in line for line in ignored) == 1
    assert all("not asked" in line for line in ignored)
    assert not any(FORGED in line for line in warnings)  # names only, never contents
    assert not any("no calendar from" in line for line in warnings)


async def test_a_participant_answering_under_another_name_is_taken_as_itself(
    tmp_path: Path, warnings: Warnings
) -> None:
    liar = NAMES[0]
    baseline = await plan(list(people()))
    warnings.clear()

    workers = people(impostor=liar)
    started = time.monotonic()
    outputs = await plan(list(workers))
    elapsed = time.monotonic() - started

    result = validate(outputs, tmp_path)
    assert result["valid"], result
    assert scheduled(outputs) == scheduled(baseline)
    assert result["weighted"] == REFERENCE["weighted"]
    assert elapsed < REPLY_TIMEOUT  # its reply counted as its own: nobody was waited out
    # whoever the solver put in a meeting holds the booking in its own calendar
    agents = {w.name: w for w in workers}
    for output in outputs.values():
        for person in output.participants:
            assert output.name in agents[person].bookings, (person, output.name)
    assert any(liar in o.participants for o in outputs.values())

    claims = [line for line in warnings if "named another participant" in line]
    assert sum(f"calendar reply from {liar!r}" in line for line in claims) == 1
    assert sum(f"booking reply from {liar!r}" in line for line in claims) == 1
    assert all(f"from {liar!r}" in line for line in claims)
    assert not any("no calendar from" in line for line in warnings)
