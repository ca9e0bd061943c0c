"""A scheduling problem and its solution as plain data, and the validity rules, sans-I/O.

The rules (the same as ``shared/meetings/validate.py``): a scheduled meeting lies on its
own date, inside ``[earliest_start, latest_end]``, lasts its duration; every attendee is
available for the whole meeting; there are at least ``minimum_participants`` distinct
attendees and every required person attends; nobody is in two meetings of one date that
overlap or are less than ``min_gap`` hours apart. The solver and the tests share them.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping

__all__ = ["Need", "Placement", "Problem", "Solution", "violations"]

#: person -> date -> availability windows (start, end), whole hours
Availability = Mapping[str, Mapping[str, list[tuple[int, int]]]]


@dataclasses.dataclass(frozen=True)
class Need:
    """One meeting to place."""

    id: str
    name: str
    date: str
    duration: int
    minimum: int
    priority: int = 1
    required: frozenset[str] = frozenset()

    @property
    def seats(self) -> int:
        """Attendees to seat: the minimum, or all required people if they are more."""
        return max(self.minimum, len(self.required))


@dataclasses.dataclass
class Problem:
    meetings: list[Need]
    availability: Availability
    earliest: int = 9
    latest: int = 17
    min_gap: int = 0
    #: an extra rule: may this meeting start at this hour? (custom scheduling rules)
    allow: Callable[[Need, int], bool] | None = None

    @property
    def total_weight(self) -> int:
        return sum(m.priority for m in self.meetings)


@dataclasses.dataclass(frozen=True)
class Placement:
    meeting_id: str
    date: str
    start: int
    end: int
    attendees: tuple[str, ...]


@dataclasses.dataclass
class Solution:
    placements: dict[str, Placement]
    reasons: dict[str, str]  # meeting id -> why it is not scheduled

    def weighted(self, problem: Problem) -> int:
        weight = {m.id: m.priority for m in problem.meetings}
        return sum(weight[mid] for mid in self.placements)


def _available(windows: Iterable[tuple[int, int]], start: int, end: int) -> bool:
    return any(a <= start and end <= b for a, b in windows)


def violations(problem: Problem, placements: Iterable[Placement]) -> list[str]:
    """Every rule a set of placements breaks (empty when the schedule is valid)."""
    found: list[str] = []
    needs = {m.id: m for m in problem.meetings}
    booked: dict[tuple[str, str], list[tuple[int, int, str]]] = defaultdict(list)
    seen: set[str] = set()
    for p in placements:
        need = needs.get(p.meeting_id)
        if need is None:
            found.append(f"unknown meeting {p.meeting_id!r}")
            continue
        if p.meeting_id in seen:
            found.append(f"{need.name!r} placed twice")
        seen.add(p.meeting_id)
        where = f"{need.name!r} {p.date} {p.start}-{p.end}"
        if p.date != need.date:
            found.append(f"{where}: the meeting is on {need.date}")
        if p.end - p.start != need.duration:
            found.append(f"{where}: not {need.duration} h")
        if p.start < problem.earliest or p.end > problem.latest:
            found.append(f"{where}: outside [{problem.earliest}, {problem.latest}]")
        people = set(p.attendees)
        if len(people) != len(p.attendees):
            found.append(f"{where}: an attendee is listed twice")
        if len(people) < need.minimum:
            found.append(f"{where}: {len(people)} attendees, needs {need.minimum}")
        missing = need.required - people
        if missing:
            found.append(f"{where}: required {sorted(missing)} absent")
        for person in people:
            windows = problem.availability.get(person, {}).get(p.date, [])
            if not _available(windows, p.start, p.end):
                found.append(f"{where}: {person} is not available")
            booked[(person, p.date)].append((p.start, p.end, need.name))
    gap = problem.min_gap
    for (person, date), intervals in booked.items():
        intervals.sort()
        for (s1, e1, n1), (s2, e2, n2) in zip(intervals, intervals[1:], strict=False):
            if s2 < e1 + gap:
                found.append(f"{person} on {date}: {n1!r} {s1}-{e1} and {n2!r} {s2}-{e2} clash")
    return found
