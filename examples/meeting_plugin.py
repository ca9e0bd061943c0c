"""The tutorial's meetings and people, scheduled by the shipped meeting plugin.

    python examples/meeting_plugin.py

The participants are agents over TCP that own their calendars; the playground asks them
when they are free, solves, and books the meetings with them. The result is checked
against the validity rules (nobody double-booked, everyone available, minimums met).
"""

from __future__ import annotations

import asyncio

from ceylon.scheduling import (
    Meeting,
    ParticipantAgent,
    Placement,
    Problem,
    SchedulingPlayground,
    TimeConstraints,
    TimeSlot,
    violations,
)
from ceylon.scheduling.instance import problem_for

DATE = "2024-07-21"
PEOPLE = {
    "Alice": [(9, 12), (14, 17)],
    "Bob": [(10, 13), (15, 18)],
    "Charlie": [(11, 14), (16, 18)],
    "David": [(9, 11), (13, 16)],
}


async def main() -> None:
    meetings = [Meeting("Team Sync", DATE, 1, 3), Meeting("Project Review", DATE, 2, 2)]
    participants = [
        ParticipantAgent(name, [TimeSlot(DATE, a, b) for a, b in windows])
        for name, windows in PEOPLE.items()
    ]
    constraints = TimeConstraints(earliest_start=9, latest_end=18, min_gap=0)
    playground = SchedulingPlayground(port=0, constraints=constraints, progress=lambda _: None)
    results = await playground.schedule_meetings(meetings, participants)
    placements = []
    for output in results.values():
        slot = output.time_slot
        if output.scheduled and slot is not None:
            print(f"{output.name}: {slot.date} {slot.start_time}-{slot.end_time} "
                  f"with {', '.join(output.participants)}")  # fmt: skip
            placements.append(Placement(output.name, slot.date, slot.start_time,
                                        slot.end_time, tuple(output.participants)))  # fmt: skip
        else:
            print(f"{output.name}: not scheduled ({output.error})")
    availability = {p: {DATE: w} for p, w in PEOPLE.items()}
    problem: Problem = problem_for(meetings, availability, constraints)
    broken = violations(problem, placements)
    print("valid schedule" if not broken else f"INVALID: {broken}")


if __name__ == "__main__":
    asyncio.run(main())
