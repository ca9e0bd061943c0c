"""The meeting plugin and `SchedulingPlayground`: learn, solve, book, re-plan.

1. *Learn*: every participant agent is asked for its free windows (`CalendarRequest`);
   the playground knows nothing about anyone's calendar but what they answer.
2. *Solve*: the sans-I/O solver (in a worker thread, so heartbeats carry on).
3. *Book*: each attendee is asked to hold the slot (`BookingProposal`) and decides against
   its own calendar; a meeting every attendee accepted is confirmed (`MeetingScheduled`).
4. *Re-plan*: a meeting someone refused, or whose attendee left, is released
   (`MeetingCancelled`) and solved again with what is left, for a few rounds.

A calendar or booking reply counts only from an agent that was asked (by agent id), and
as that agent's own answer: the sender the playground authenticated, never the name in
the reply's ``participant`` field. Anything else is ignored, with a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from loguru import logger

from ..base.agent import BaseAgent
from ..base.playground import BasePlayGround
from ..errors import AgentNotFoundError
from ..peer import AgentDetail
from ..plugin import Plugin
from .data import (
    BookingProposal,
    BookingReply,
    CalendarReply,
    CalendarRequest,
    Meeting,
    MeetingCancelled,
    MeetingOutput,
    MeetingScheduled,
    PlanRequest,
    PlanResult,
    TimeConstraints,
    TimeSlot,
)
from .planner import ROUNDS, Planner, Windows
from .solver import DEFAULT_TIME_LIMIT, solve

__all__ = ["MeetingPlugin", "SchedulingPlayground", "SchedulingRule", "attach"]

REPLY_TIMEOUT = 10.0


class SchedulingRule(Protocol):
    """A custom rule: may `meeting` take place in `slot`?"""

    def allows(self, meeting: Meeting, slot: TimeSlot) -> bool: ...


class MeetingPlugin(Plugin["BasePlayGround"]):
    """Schedules meetings with the participant agents connected to a playground."""

    name = "meetings"

    def __init__(
        self,
        constraints: TimeConstraints | None = None,
        time_limit: float = DEFAULT_TIME_LIMIT,
        rules: Sequence[SchedulingRule] = (),
        role: str = "participant",
        progress: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__()
        self.constraints = constraints or TimeConstraints()
        self.time_limit = time_limit
        self.rules = list(rules)
        self.role = role
        self.progress = progress or (lambda line: logger.info("{}", line))
        self._requests = itertools.count(1)
        self._calendars: dict[int, dict[str, list[TimeSlot]]] = {}
        self._calendar_done: dict[int, asyncio.Event] = {}
        self._expected: dict[int, set[str]] = {}
        #: who was asked, agent id -> name: per calendar request, per meeting in booking
        self._asked_calendar: dict[int, dict[str, str]] = {}
        self._asked_booking: dict[str, dict[str, str]] = {}
        #: (sender id, what was wrong with its reply) already warned of in this plan
        self._warned: set[tuple[str, str]] = set()
        self._replies: dict[str, dict[str, BookingReply]] = {}
        self._reply_waiters: dict[str, asyncio.Event] = {}
        self._left: set[str] = set()
        self._people: dict[str, str] = {}  # name -> agent id
        self._plans = 0
        self._planning = 0
        #: set (from any thread) to end the search now with the best schedule so far
        #: and plan no further rounds (what SIGINT does to ``ceylon meetings solve``)
        self.stopping = threading.Event()
        #: the outputs of the last `plan` (kept for a caller cut short after it ended)
        self.last_outputs: dict[str, MeetingOutput] | None = None

    def attach(self, playground: BasePlayGround) -> None:
        super().attach(playground)
        playground.on(CalendarReply)(self._on_calendar)
        playground.on(BookingReply)(self._on_booking)
        playground.on(PlanRequest)(self._on_plan_request)
        playground.require_permission(CalendarReply, "answer_meetings")
        playground.require_permission(BookingReply, "answer_meetings")
        playground.require_permission(PlanRequest, "plan_meetings")

    def join_refusal(self, agent: AgentDetail, refusal: Callable[[str], str | None]) -> str | None:
        return refusal("answer_meetings") if agent.role == self.role else None

    async def _on_plan_request(self, request: PlanRequest) -> PlanResult:
        outputs = await self.plan(request.meetings, request.constraints, request.time_limit)
        return PlanResult(list(outputs.values()))

    def agent_left(self, agent: AgentDetail) -> None:
        if agent.role == self.role:
            self._left.add(agent.name)
            for request, expected in self._expected.items():
                expected.discard(agent.name)
                if not expected:
                    self._calendar_done[request].set()
            for waiter in self._reply_waiters.values():
                waiter.set()  # the booking round re-checks who is still there

    def status(self) -> dict[str, Any]:
        """For ``ceylon status``: participants connected, plans run (ended, however they
        ended) and under way."""
        participants = sum(m.detail.role == self.role for m in self._pg.directory)
        return {"participants": participants, "plans run": self._plans, "planning": self._planning}

    @property
    def _pg(self) -> BasePlayGround:
        assert self.playground is not None, "the plugin is not attached to a playground"
        return self.playground

    # -- learning ---------------------------------------------------------------------

    def _sender_name(
        self, kind: str, asked: dict[str, str], claimed: str, agent: AgentDetail
    ) -> str | None:
        """The name a reply counts under: the asked sender's own, whatever it claims;
        None (the reply is ignored) if `agent` was not asked. Warns once per sender per
        plan, naming the sender only."""
        name = asked.get(agent.id)
        if name is None:
            self._warn(agent, kind, "ignored a {} reply from {!r} ({}): not asked")
        elif claimed != name:
            self._warn(
                agent,
                kind,
                "a {} reply from {!r} ({}) named another participant: counted as its own",
            )
        return name

    def _warn(self, agent: AgentDetail, kind: str, text: str) -> None:
        key = (agent.id, f"{kind}: {text}")
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(text, kind, agent.name, agent.id)

    async def _on_calendar(self, reply: CalendarReply, agent: AgentDetail) -> None:
        calendar = self._calendars.get(reply.request)
        asked = self._asked_calendar.get(reply.request)
        if calendar is None or asked is None:
            return  # late, or for no request of ours
        name = self._sender_name("calendar", asked, reply.participant, agent)
        if name is None:
            return
        calendar[name] = reply.free
        expected = self._expected[reply.request]
        expected.discard(name)
        if not expected:
            self._calendar_done[reply.request].set()

    async def _gather(
        self, people: list[AgentDetail], dates: list[str], constraints: TimeConstraints
    ) -> Windows:
        request = next(self._requests)
        self._calendars[request] = {}
        self._expected[request] = {p.name for p in people}
        self._asked_calendar[request] = {p.id: p.name for p in people}
        self._calendar_done[request] = done = asyncio.Event()
        c = constraints
        ask = CalendarRequest(request, dates, c.earliest_start, c.latest_end)
        for person in people:
            with contextlib.suppress(AgentNotFoundError):
                self._pg.send_message_nowait(person.id, ask)
        if not people:
            done.set()
        try:
            async with asyncio.timeout(REPLY_TIMEOUT):
                await done.wait()
        except TimeoutError:
            silent = sorted(self._expected[request])
            logger.warning("no calendar from {} participant(s): {}", len(silent), silent[:10])
        calendars = self._calendars.pop(request)
        del self._expected[request], self._calendar_done[request]
        del self._asked_calendar[request]
        windows: Windows = {}
        for name, slots in calendars.items():
            days = windows.setdefault(name, {})
            for slot in slots:
                days.setdefault(slot.date, []).append((slot.start_time, slot.end_time))
        return windows

    # -- booking ----------------------------------------------------------------------

    async def _on_booking(self, reply: BookingReply, agent: AgentDetail) -> None:
        replies = self._replies.get(reply.meeting_id)
        asked = self._asked_booking.get(reply.meeting_id)
        if replies is None or asked is None:
            return  # late, or for no booking of ours
        name = self._sender_name("booking", asked, reply.participant, agent)
        if name is None:
            return
        replies[name] = reply
        waiter = self._reply_waiters.get(reply.meeting_id)
        if waiter is not None:
            waiter.set()

    async def _book(
        self, meeting: Meeting, slot: TimeSlot, people: list[str], min_gap: int
    ) -> list[str]:
        """Ask each attendee to hold `slot`; returns those who did not accept."""
        replies: dict[str, BookingReply] = {}
        self._replies[meeting.name] = replies
        self._reply_waiters[meeting.name] = waiter = asyncio.Event()
        self._asked_booking[meeting.name] = asked = {}
        proposal = BookingProposal(meeting.name, meeting.name, slot, min_gap)
        unreachable = []
        for person in people:
            detail = self._pg.directory.find(self._people.get(person, person))
            try:
                if detail is None or detail.name != person:
                    raise AgentNotFoundError(person)
                self._pg.send_message_nowait(detail.id, proposal)
            except AgentNotFoundError:
                unreachable.append(person)
            else:
                asked[detail.id] = person  # its reply is handled after this loop
        try:
            async with asyncio.timeout(REPLY_TIMEOUT):
                while True:
                    waiting = [p for p in people if p not in replies and p not in self._left]
                    if not waiting:
                        break
                    waiter.clear()
                    await waiter.wait()
        except TimeoutError:
            pass
        finally:
            del self._replies[meeting.name], self._reply_waiters[meeting.name]
            del self._asked_booking[meeting.name]
        refused = [p for p in people if not (p in replies and replies[p].accepted)]
        return sorted(set(refused) | set(unreachable))

    async def _cancel(self, meeting_id: str, people: Iterable[str]) -> None:
        for person in people:
            with contextlib.suppress(AgentNotFoundError):
                self._pg.send_message_nowait(self._people.get(person, person),
                                             MeetingCancelled(meeting_id))  # fmt: skip

    # -- planning ---------------------------------------------------------------------

    async def plan(
        self,
        meetings: Sequence[Meeting],
        constraints: TimeConstraints | None = None,
        time_limit: float | None = None,
    ) -> dict[str, MeetingOutput]:
        """Schedule `meetings` with the participants connected now (under `constraints`
        and `time_limit` if given, else the plugin's own).

        Returns:
            One `MeetingOutput` per meeting, by name; an unscheduled one says why.
        """
        self._planning += 1
        try:
            return await self._plan(
                meetings,
                constraints or self.constraints,
                self.time_limit if time_limit is None else time_limit,
            )
        finally:
            self._planning -= 1
            self._plans += 1

    async def _plan(
        self, meetings: Sequence[Meeting], constraints: TimeConstraints, time_limit: float
    ) -> dict[str, MeetingOutput]:
        started = time.monotonic()
        people = [
            a
            for a in await self._pg.get_connected_agents()
            if a.role == self.role and self._pg.permits(a.id, "answer_meetings")
        ]
        self._people = {p.name: p.id for p in people}
        self._left = set()
        self._warned = set()
        dates = sorted({m.date for m in meetings})
        self.progress(f"asking {len(people)} participants for their calendars")
        windows = await self._gather(people, dates, constraints)
        self.progress(
            f"calendars from {len(windows)} participants in {time.monotonic() - started:.2f} s"
        )
        by_name = {m.name: m for m in meetings}
        allow = self._rule_check(by_name) if self.rules else None
        planner = Planner(meetings, windows, constraints, allow=allow, rounds=ROUNDS)
        while (problem := planner.next_problem(self._left)) is not None:
            self.progress(f"round {planner.round}: solving {len(problem.meetings)} meeting(s)")
            solution = await asyncio.to_thread(
                solve, problem, planner.budget(time_limit), planner.round, self.progress,
                self.stopping.is_set,
            )  # fmt: skip
            bookings = planner.proposals(solution)
            refusals = await asyncio.gather(
                *(
                    self._book(b.meeting, b.slot, list(b.attendees), constraints.min_gap)
                    for b in bookings
                )
            )
            for booking, refused in zip(bookings, refusals, strict=True):
                release = planner.booked(booking, refused)
                if release:
                    await self._cancel(booking.meeting.name, release)
            for name, stay in planner.end_round(self._left):
                await self._cancel(name, stay)
            if self.stopping.is_set():
                planner.stop()
            elif planner.retrying:
                self.progress(f"round {planner.round}: {planner.retrying} meeting(s) to plan again")
        for booking in planner.confirmed():
            scheduled = MeetingScheduled(
                booking.meeting.name, booking.slot, list(booking.attendees)
            )
            for person in booking.attendees:
                with contextlib.suppress(AgentNotFoundError):
                    self._pg.send_message_nowait(self._people.get(person, person), scheduled)
        self.last_outputs = outputs = planner.outputs()
        done = sum(o.scheduled for o in outputs.values())
        self.progress(
            f"scheduled {done}/{len(meetings)} meetings in {time.monotonic() - started:.2f} s"
        )
        return outputs

    def _rule_check(self, by_name: dict[str, Meeting]) -> Callable[[Any, int], bool]:
        def allow(need: Any, start: int) -> bool:
            meeting = by_name[need.id]
            slot = TimeSlot(meeting.date, start, start + meeting.duration)
            return all(rule.allows(meeting, slot) for rule in self.rules)

        return allow


class SchedulingPlayground(BasePlayGround):
    """A playground with the meeting plugin, and the tutorial's `schedule_meetings`.

    Args:
        name, port, **kwargs: as `BasePlayGround`.
        constraints: earliest start, latest end, minimum gap (`TimeConstraints`).
        time_limit: seconds the solver may spend improving a schedule.
        rules: custom `SchedulingRule`s every meeting's slot must satisfy.
    """

    def __init__(
        self,
        name: str = "meeting_scheduler",
        port: int | None = None,
        *,
        constraints: TimeConstraints | None = None,
        time_limit: float = DEFAULT_TIME_LIMIT,
        rules: Sequence[SchedulingRule] = (),
        progress: Callable[[str], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(name=name, port=port, **kwargs)
        self.meeting_plugin = MeetingPlugin(constraints, time_limit, rules, progress=progress)
        self.add_plugin(self.meeting_plugin)

    async def schedule_meetings(
        self, meetings: Sequence[Meeting], participants: Sequence[BaseAgent] = ()
    ) -> dict[str, MeetingOutput]:
        """Connect the participants (in this process), schedule, book; one output per meeting.

        With no participants given, the ones already connected (e.g. other processes) are
        used.
        """
        if participants:
            async with self.play(workers=participants, timeout=60.0):
                return await self.meeting_plugin.plan(meetings)
        if not self.started:
            await self.start()
        return await self.meeting_plugin.plan(meetings)


def attach(playground: BasePlayGround, **options: Any) -> MeetingPlugin:
    """Host the meeting plugin on `playground` (what ``--plugin meetings`` does)."""
    return playground.add_plugin(MeetingPlugin(**options))
