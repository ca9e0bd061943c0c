"""Instances and solutions in the JSON format of ``shared/meetings/README.md``, sans-I/O.

Reading checks every field and names the bad one (`InstanceError`), so a malformed file
is refused before anything runs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..errors import CeylonError
from .data import Meeting, TimeConstraints, TimeSlot
from .problem import Need, Problem, Solution

__all__ = ["Instance", "InstanceError", "parse_instance", "solution_json"]


class InstanceError(CeylonError, ValueError):
    """An instance file is malformed; `field` says where."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        super().__init__(f"{field}: {reason}")


@dataclasses.dataclass
class Instance:
    name: str
    participants: dict[str, list[TimeSlot]]
    meetings: list[Meeting]
    constraints: TimeConstraints

    def problem(self) -> Problem:
        """The solver's view (availability as known from the file, e.g. for tests)."""
        availability: dict[str, dict[str, list[tuple[int, int]]]] = {}
        for person, slots in self.participants.items():
            days = availability.setdefault(person, {})
            for slot in slots:
                days.setdefault(slot.date, []).append((slot.start_time, slot.end_time))
        return problem_for(self.meetings, availability, self.constraints)


def problem_for(
    meetings: list[Meeting],
    availability: dict[str, dict[str, list[tuple[int, int]]]],
    constraints: TimeConstraints,
) -> Problem:
    needs = [
        Need(
            m.name,
            m.name,
            m.date,
            m.duration,
            m.minimum_participants,
            m.priority,
            frozenset(m.required),
        )  # fmt: skip
        for m in meetings
    ]
    return Problem(needs, availability, constraints.earliest_start, constraints.latest_end,
                   constraints.min_gap)  # fmt: skip


def _field(obj: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(obj, dict):
        raise InstanceError(where, f"expected an object, got {type(obj).__name__}")
    if key not in obj:
        raise InstanceError(f"{where}.{key}", "missing")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise InstanceError(f"{where}.{key}", f"expected {names}, got {value!r}")
    return value


def _hour(obj: Any, key: str, where: str) -> int:
    value = _field(obj, key, int, where)
    if not 0 <= value <= 24:
        raise InstanceError(f"{where}.{key}", f"{value} is not an hour of the day")
    return int(value)


def parse_instance(data: Any) -> Instance:
    """Check and read an instance (already parsed from JSON).

    Raises:
        InstanceError: a field is missing, of the wrong type or out of range.
    """
    name = _field(data, "name", str, "instance")
    constraints_obj = _field(data, "constraints", dict, "instance")
    lo = _hour(constraints_obj, "earliest_start", "constraints")
    hi = _hour(constraints_obj, "latest_end", "constraints")
    gap = constraints_obj.get("min_gap", 0)
    if not isinstance(gap, int) or isinstance(gap, bool) or gap < 0:
        raise InstanceError("constraints.min_gap", f"expected a whole number >= 0, got {gap!r}")
    if hi <= lo:
        raise InstanceError("constraints.latest_end", f"{hi} is not after earliest_start {lo}")
    participants: dict[str, list[TimeSlot]] = {}
    for i, person in enumerate(_field(data, "participants", list, "instance")):
        where = f"participants[{i}]"
        pname = _field(person, "name", str, where)
        if pname in participants:
            raise InstanceError(f"{where}.name", f"{pname!r} appears twice")
        slots = []
        for j, window in enumerate(_field(person, "available", list, where)):
            wwhere = f"{where}.available[{j}]"
            date = _field(window, "date", str, wwhere)
            start, end = _hour(window, "start", wwhere), _hour(window, "end", wwhere)
            if end <= start:
                raise InstanceError(f"{wwhere}.end", f"{end} is not after start {start}")
            slots.append(TimeSlot(date, start, end))
        participants[pname] = slots
    meetings = []
    names = set()
    for i, entry in enumerate(_field(data, "meetings", list, "instance")):
        where = f"meetings[{i}]"
        mname = _field(entry, "name", str, where)
        if mname in names:
            raise InstanceError(f"{where}.name", f"{mname!r} appears twice")
        names.add(mname)
        duration = _field(entry, "duration", int, where)
        minimum = _field(entry, "minimum_participants", int, where)
        if duration < 1:
            raise InstanceError(f"{where}.duration", f"{duration} is not a positive number")
        if minimum < 1:
            raise InstanceError(f"{where}.minimum_participants", f"{minimum} is not positive")
        priority = entry.get("priority", 1)
        if not isinstance(priority, int) or isinstance(priority, bool) or priority < 0:
            raise InstanceError(f"{where}.priority", f"expected a whole number, got {priority!r}")
        required = entry.get("required") or []
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            raise InstanceError(f"{where}.required", "expected a list of names")
        meetings.append(
            Meeting(
                mname,
                _field(entry, "date", str, where),
                duration,
                minimum,
                priority,
                list(required),
            )  # fmt: skip
        )
    return Instance(name, participants, meetings, TimeConstraints(lo, hi, gap))


def solution_json(instance: Instance, solution: Solution, **extra: Any) -> dict[str, Any]:
    """The solution object of the README format (``{"schedule": [...], ...}``)."""
    schedule: list[dict[str, Any]] = []
    for meeting in instance.meetings:
        placed = solution.placements.get(meeting.name)
        if placed is None:
            reason = solution.reasons.get(meeting.name, "not scheduled")
            schedule.append({"meeting": meeting.name, "scheduled": False, "reason": reason})
        else:
            schedule.append(
                {
                    "meeting": meeting.name,
                    "scheduled": True,
                    "date": placed.date,
                    "start": placed.start,
                    "end": placed.end,
                    "participants": list(placed.attendees),
                }
            )
    return {"schedule": schedule, **extra}
