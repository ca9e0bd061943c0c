"""Instances and solutions in the JSON format of ``shared/meetings/README.md``, sans-I/O.

Reading is strict and checks every field, naming the bad one (`InstanceError`, one line,
e.g. ``meetings[3].priorty: unknown key ...``), so a malformed file is refused before
anything runs: unknown keys (with a "did you mean"), dates that are not ISO ``YYYY-MM-DD``,
hours that are not whole numbers 0-24, windows that end before they start, and required
people who are not participants. `FORMAT_HELP` describes the format for ``--help``; the
JSON Schema ``instance.schema.json`` beside this module describes it for other tools.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import json
import re
from importlib import resources
from typing import Any

from ..errors import CeylonError
from .data import Meeting, TimeConstraints, TimeSlot
from .problem import Need, Problem, Solution

__all__ = [
    "FORMAT_HELP",
    "Instance",
    "InstanceError",
    "json_schema",
    "parse_instance",
    "solution_json",
]

FORMAT_HELP = """\
instance format (JSON; every key below, no others):
  name                    text: the instance's name
  constraints             object:
    earliest_start        hour 0-24: no meeting starts before it
    latest_end            hour 0-24, after earliest_start: no meeting ends after it
    min_gap               optional hours >= 0 (default 0) between two meetings of one
                          person on one date
  participants            list, one object per person:
    name                  text, unique
    available             list of windows in which the person is free, each:
      date                YYYY-MM-DD
      start               hour 0-24
      end                 hour 0-24, after start
  meetings                list, one object per meeting:
    name                  text, unique
    date                  YYYY-MM-DD: the day it must be held on
    duration              whole hours >= 1
    minimum_participants  whole number >= 1 of distinct attendees
    priority              optional whole number >= 1 (default 1): its weight when not
                          every meeting fits
    required              optional list of participant names who must attend

Dates are ISO YYYY-MM-DD (2024-07-21, not 07/21/2024); hours are whole numbers 0-24
(9, not "9:00"); a meeting of duration d starting at hour s ends at s + d. Unknown keys,
and required people who are not participants, are errors.

How it maps to the tutorial: each participant is a ParticipantAgent(name,
available_slots) with one TimeSlot(date, start_time=start, end_time=end) per window;
each meeting is Meeting(name, date, duration, minimum_participants, priority=...,
required=...) (priority is the tutorial's PrioritizedMeeting field); constraints is
TimeConstraints(earliest_start, latest_end, min_gap).

example:
  {"name": "demo",
   "participants": [
     {"name": "Alice", "available": [{"date": "2024-07-21", "start": 9, "end": 12}]},
     {"name": "Bob", "available": [{"date": "2024-07-21", "start": 10, "end": 13}]}],
   "meetings": [
     {"name": "Team Sync", "date": "2024-07-21", "duration": 1,
      "minimum_participants": 2, "priority": 2, "required": ["Alice"]}],
   "constraints": {"earliest_start": 9, "latest_end": 18, "min_gap": 0}}

JSON Schema (draft 2020-12): instance.schema.json in the ceylon.scheduling package.
"""

# Every key of every object, required ones first (the JSON Schema says the same).
_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "instance": (("name", "participants", "meetings", "constraints"), ()),
    "constraints": (("earliest_start", "latest_end"), ("min_gap",)),
    "participant": (("name", "available"), ()),
    "window": (("date", "start", "end"), ()),
    "meeting": (("name", "date", "duration", "minimum_participants"), ("priority", "required")),
}

_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class InstanceError(CeylonError, ValueError):
    """An instance file is malformed; `field` says where (e.g. ``meetings[3].date``)."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
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


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the instance format, shipped with the package."""
    text = resources.files("ceylon.scheduling").joinpath("instance.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _object(value: Any, kind: str, where: str) -> dict[str, Any]:
    """`value` as an object of `kind`: no unknown keys (checked first), no missing ones."""
    if not isinstance(value, dict):
        raise InstanceError(where, f"expected an object, got {_show(value)}")
    required, optional = _KEYS[kind]
    known = [*required, *optional]
    for key in value:
        if key not in known:
            raise InstanceError(
                f"{where}.{key}",
                f"unknown key {key!r}{_suggest(str(key), known)}; "
                f"the keys of {'an' if kind[0] in 'aeiou' else 'a'} {kind} are {', '.join(known)}",
            )
    for key in required:
        if key not in value:
            raise InstanceError(f"{where}.{key}", "missing")
    return value


def _text(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj[key]
    if not isinstance(value, str) or not value:
        raise InstanceError(f"{where}.{key}", f"expected a non-empty text, got {_show(value)}")
    return value


def _list(obj: dict[str, Any], key: str, where: str) -> list[Any]:
    value = obj[key]
    if not isinstance(value, list):
        raise InstanceError(f"{where}.{key}", f"expected a list, got {_show(value)}")
    return value


def _whole(obj: dict[str, Any], key: str, where: str, minimum: int, what: str) -> int:
    value = obj[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InstanceError(f"{where}.{key}", f"expected {what}, got {_show(value)}")
    return value


def _hour(obj: dict[str, Any], key: str, where: str) -> int:
    value = obj[key]
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 24:
        raise InstanceError(f"{where}.{key}", f"expected a whole hour 0-24, got {_show(value)}")
    return value


def _date(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj[key]
    if not isinstance(value, str) or not _ISO_DATE.fullmatch(value):
        raise InstanceError(
            f"{where}.{key}", f"expected a date YYYY-MM-DD (e.g. 2024-07-21), got {_show(value)}"
        )
    try:
        datetime.date.fromisoformat(value)
    except ValueError as exc:
        raise InstanceError(f"{where}.{key}", f"{value!r} is not a real date ({exc})") from None
    return value


def _required(listed: list[Any], people: dict[str, Any], meeting: str, where: str) -> list[str]:
    """The required people of `meeting`: each a participant, each once."""
    required: list[str] = []
    for j, person in enumerate(listed):
        if not isinstance(person, str):
            raise InstanceError(
                f"{where}[{j}]", f"expected a participant's name, got {_show(person)}"
            )
        if person not in people:
            raise InstanceError(
                f"{where}[{j}]",
                f"{person!r}, required by meeting {meeting!r}, is not a participant"
                f"{_suggest(person, list(people))}",
            )
        if person in required:
            raise InstanceError(f"{where}[{j}]", f"{person!r} is listed twice")
        required.append(person)
    return required


def parse_instance(data: Any) -> Instance:
    """Check and read an instance (already parsed from JSON); see `FORMAT_HELP`.

    Raises:
        InstanceError: a key is unknown or missing, a value is of the wrong type, out of
            range or not a YYYY-MM-DD date, a window or the working day ends before it
            starts, a name appears twice, or a required person is not a participant.
    """
    top = _object(data, "instance", "instance")
    name = _text(top, "name", "instance")
    constraints_obj = _object(top["constraints"], "constraints", "constraints")
    lo = _hour(constraints_obj, "earliest_start", "constraints")
    hi = _hour(constraints_obj, "latest_end", "constraints")
    gap = 0
    if "min_gap" in constraints_obj:
        gap = _whole(constraints_obj, "min_gap", "constraints", 0, "a whole number of hours >= 0")
    if hi <= lo:
        raise InstanceError("constraints.latest_end", f"{hi} is not after earliest_start {lo}")
    participants: dict[str, list[TimeSlot]] = {}
    for i, person_value in enumerate(_list(top, "participants", "instance")):
        where = f"participants[{i}]"
        person = _object(person_value, "participant", where)
        pname = _text(person, "name", where)
        if pname in participants:
            raise InstanceError(f"{where}.name", f"{pname!r} appears twice")
        slots = []
        for j, window_value in enumerate(_list(person, "available", where)):
            wwhere = f"{where}.available[{j}]"
            window = _object(window_value, "window", wwhere)
            date = _date(window, "date", wwhere)
            start, end = _hour(window, "start", wwhere), _hour(window, "end", wwhere)
            if end <= start:
                raise InstanceError(f"{wwhere}.end", f"{end} is not after start {start}")
            slots.append(TimeSlot(date, start, end))
        participants[pname] = slots
    meetings = []
    names = set()
    for i, entry_value in enumerate(_list(top, "meetings", "instance")):
        where = f"meetings[{i}]"
        entry = _object(entry_value, "meeting", where)
        mname = _text(entry, "name", where)
        if mname in names:
            raise InstanceError(f"{where}.name", f"{mname!r} appears twice")
        names.add(mname)
        date = _date(entry, "date", where)
        duration = _whole(entry, "duration", where, 1, "a whole number of hours >= 1")
        minimum = _whole(entry, "minimum_participants", where, 1, "a whole number >= 1")
        priority = 1
        if "priority" in entry:
            priority = _whole(entry, "priority", where, 1, "a whole number >= 1")
        listed = _list(entry, "required", where) if "required" in entry else []
        required = _required(listed, participants, mname, f"{where}.required")
        meetings.append(Meeting(mname, date, duration, minimum, priority, required))
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
