"""The meeting plugin's plan and re-plan logic, sans-I/O.

The plugin learns calendars, solves, books and notifies; this decides, from what it is
told, what to solve next, what to propose, what to release and what the outcome is:

1. `next_problem()` gives the problem for the meetings still open (None when done);
2. the caller solves it and hands the solution to `proposals()`, which says what to book;
3. each booking's refusals go to `booked()`, which says whom to release it for;
4. `end_round(left)` releases what people who left were booked into and decides
   whether another round is needed (at most `rounds`, or none once `stop()` was called);
5. `outputs()` and `confirmed()` are the result.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .data import Meeting, MeetingOutput, TimeConstraints, TimeSlot
from .instance import problem_for
from .intervals import subtract
from .problem import Problem, Solution

__all__ = ["ROUNDS", "Booking", "Planner", "Windows"]

#: Rounds of solving and booking before what is still refused stays unscheduled.
ROUNDS = 5

#: Free windows: person -> date -> [(start, end), ...].
Windows = dict[str, dict[str, list[tuple[int, int]]]]


@dataclasses.dataclass(frozen=True)
class Booking:
    """A meeting to book at `slot` with `attendees`."""

    meeting: Meeting
    slot: TimeSlot
    attendees: tuple[str, ...]


class Planner:
    """Plans `meetings` over the free `windows` the participants reported.

    Args:
        allow: an extra rule, ``allow(need, start) -> bool`` (custom scheduling rules).
        rounds: how many times refused meetings are planned again.
    """

    def __init__(
        self,
        meetings: Sequence[Meeting],
        windows: Windows,
        constraints: TimeConstraints,
        *,
        allow: Callable[[Any, int], bool] | None = None,
        rounds: int = ROUNDS,
    ) -> None:
        self.meetings = list(meetings)
        self.windows = windows
        self.constraints = constraints
        self.allow = allow
        self.rounds = rounds
        #: the round under way (1 for the first)
        self.round = 0
        self._by_name = {m.name: m for m in meetings}
        self._open = list(meetings)
        self._outputs: dict[str, MeetingOutput] = {}
        self._confirmed: dict[str, Booking] = {}
        self._retry: list[Meeting] = []
        self._stopped = False
        self._done = False

    # -- a round ---------------------------------------------------------------------

    def next_problem(self, left: Iterable[str] = ()) -> Problem | None:
        """The problem of the next round, without the people who `left`; None when the
        plan is done."""
        if self._done or self.round >= self.rounds or (self.round and self._stopped):
            self._done = True
            return None
        self.round += 1
        for name in left:
            self.windows.pop(name, None)
        problem = problem_for(self._open, self.windows, self.constraints)
        if self.allow is not None:
            problem.allow = self.allow
        self._retry = []
        return problem

    def budget(self, time_limit: float) -> float:
        """Seconds the solver gets this round: all of it first, at most 1 s for a re-plan."""
        return time_limit if self.round == 1 else min(1.0, time_limit)

    def proposals(self, solution: Solution) -> list[Booking]:
        """What to book for `solution`; what it could not place is unscheduled, with why."""
        for meeting_id, reason in solution.reasons.items():
            self._outputs[meeting_id] = MeetingOutput(meeting_id, meeting_id, False, error=reason)
        return [
            Booking(self._by_name[mid], TimeSlot(p.date, p.start, p.end), tuple(p.attendees))
            for mid, p in solution.placements.items()
        ]

    def booked(self, booking: Booking, refused: Sequence[str]) -> list[str]:
        """Record how a booking went; returns whom to release it for (those who
        accepted a booking that is off because somebody refused)."""
        slot, gap = booking.slot, self.constraints.min_gap
        if refused:
            for person in refused:  # not free then, whatever it told us before
                self._take(person, slot.date, slot.start_time, slot.end_time)
            self._retry.append(booking.meeting)
            return sorted(set(booking.attendees) - set(refused))
        self._confirmed[booking.meeting.name] = booking
        for person in booking.attendees:
            self._take(person, slot.date, slot.start_time - gap, slot.end_time + gap)
        return []

    def end_round(self, left: Iterable[str]) -> list[tuple[str, list[str]]]:
        """Close the round: meetings somebody who `left` was booked into are released and
        planned again. Returns the releases to send: ``(meeting name, [people])``."""
        gone = set(left)
        releases = []
        for name, booking in list(self._confirmed.items()):
            if not set(booking.attendees) & gone:
                continue
            del self._confirmed[name]
            stay = [p for p in booking.attendees if p not in gone]
            releases.append((name, stay))
            for person in stay:
                days = self.windows.get(person)
                if days is not None:
                    days.setdefault(booking.slot.date, []).append(
                        (booking.slot.start_time, booking.slot.end_time)
                    )
            self._retry.append(booking.meeting)
        if not self._retry:
            self._done = True
        self._open = self._retry
        return releases

    def stop(self) -> None:
        """Plan no further round after the one under way."""
        self._stopped = True

    @property
    def retrying(self) -> int:
        """Meetings the next round plans again."""
        return 0 if self._done else len(self._open)

    # -- the outcome -----------------------------------------------------------------

    def confirmed(self) -> list[Booking]:
        """The bookings that hold, in the order of the meetings."""
        return [self._confirmed[m.name] for m in self.meetings if m.name in self._confirmed]

    def outputs(self) -> dict[str, MeetingOutput]:
        """One output per meeting, by name, in the order given."""
        out: dict[str, MeetingOutput] = {}
        for meeting in self.meetings:
            booking = self._confirmed.get(meeting.name)
            if booking is not None:
                out[meeting.name] = MeetingOutput(
                    meeting.name, meeting.name, True, booking.slot, list(booking.attendees)
                )
                continue
            earlier = self._outputs.get(meeting.name)
            if earlier is None or earlier.scheduled:
                earlier = MeetingOutput(
                    meeting.name, meeting.name, False, error="participants kept refusing"
                )
            out[meeting.name] = earlier
        return out

    def _take(self, person: str, date: str, start: int, end: int) -> None:
        days = self.windows.get(person, {})
        if date in days:
            days[date] = subtract(days[date], start, end)
