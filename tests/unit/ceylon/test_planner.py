"""The meeting planner, sans-I/O: rounds of solve, book, release and re-plan."""

from __future__ import annotations

from ceylon.scheduling.data import Meeting, TimeConstraints
from ceylon.scheduling.intervals import clear_of, inside, subtract
from ceylon.scheduling.planner import Planner, Windows
from ceylon.scheduling.solver import solve

DAY = "2025-03-03"
RULES = TimeConstraints(earliest_start=9, latest_end=17, min_gap=0)


def windows(*people: str, start: int = 9, end: int = 17) -> Windows:
    return {person: {DAY: [(start, end)]} for person in people}


def run_round(
    planner: Planner, refusing: dict[str, set[str]], left: frozenset[str] = frozenset()
) -> None:
    """Solve the next problem and book it; `refusing` maps a meeting to who refuses."""
    problem = planner.next_problem(left)
    assert problem is not None
    for booking in planner.proposals(solve(problem, 0.1)):
        refused = sorted(refusing.get(booking.meeting.name, set()) & set(booking.attendees))
        planner.booked(booking, refused)
    planner.end_round(left)


def test_everything_accepted_is_done_in_one_round() -> None:
    meetings = [Meeting("a", DAY, 1, 2), Meeting("b", DAY, 2, 2)]
    planner = Planner(meetings, windows("ann", "bob"), RULES)
    run_round(planner, {})
    assert planner.next_problem() is None and planner.round == 1
    outputs = planner.outputs()
    assert all(o.scheduled for o in outputs.values())
    a, b = outputs["a"].time_slot, outputs["b"].time_slot
    assert a is not None and b is not None
    assert a.end_time <= b.start_time or b.end_time <= a.start_time  # no double booking
    assert [booking.meeting.name for booking in planner.confirmed()] == ["a", "b"]


def test_a_refusal_releases_the_others_and_plans_the_meeting_again() -> None:
    meetings = [Meeting("a", DAY, 1, 2)]
    planner = Planner(meetings, windows("ann", "bob", "cy"), RULES)
    problem = planner.next_problem()
    assert problem is not None
    (booking,) = planner.proposals(solve(problem, 0.1))
    refuser = booking.attendees[0]
    release = planner.booked(booking, [refuser])
    assert release == sorted(set(booking.attendees) - {refuser})
    assert planner.end_round(()) == []
    # the refuser is not free then, whatever it said: the next round knows
    slot = booking.slot
    assert not inside(planner.windows[refuser][DAY], slot.start_time, slot.end_time)
    assert planner.retrying == 1
    run_round(planner, {})
    assert planner.outputs()["a"].scheduled and planner.round == 2


def test_who_left_loses_the_meetings_they_were_in_and_those_are_planned_again() -> None:
    meetings = [Meeting("a", DAY, 1, 2)]
    planner = Planner(meetings, windows("ann", "bob", "cy"), RULES)
    problem = planner.next_problem()
    assert problem is not None
    (booking,) = planner.proposals(solve(problem, 0.1))
    assert planner.booked(booking, []) == []
    gone = booking.attendees[0]
    releases = planner.end_round({gone})
    assert releases == [("a", [p for p in booking.attendees if p != gone])]
    run_round(planner, {}, left=frozenset({gone}))
    output = planner.outputs()["a"]
    assert output.scheduled and gone not in output.participants


def test_refused_every_round_ends_unscheduled_saying_so() -> None:
    meetings = [Meeting("a", DAY, 1, 2)]
    planner = Planner(meetings, windows("ann", "bob"), RULES, rounds=3)
    while planner.next_problem() is not None:
        planner.round -= 1  # run_round takes the next problem itself
        run_round(planner, {"a": {"ann"}})
    output = planner.outputs()["a"]
    assert not output.scheduled and output.error, output


def test_stop_plans_no_further_round() -> None:
    meetings = [Meeting("a", DAY, 1, 2)]
    planner = Planner(meetings, windows("ann", "bob"), RULES)
    run_round(planner, {"a": {"ann"}})
    planner.stop()
    assert planner.next_problem() is None
    assert not planner.outputs()["a"].scheduled


def test_the_solver_budget_is_whole_first_then_a_second() -> None:
    planner = Planner([Meeting("a", DAY, 1, 2)], windows("ann", "bob"), RULES)
    planner.next_problem()
    assert planner.budget(20.0) == 20.0
    planner.round = 2
    assert planner.budget(20.0) == 1.0 and planner.budget(0.5) == 0.5


def test_interval_maths() -> None:
    assert subtract([(9, 17)], 11, 12) == [(9, 11), (12, 17)]
    assert subtract([(9, 10), (12, 14)], 8, 13) == [(13, 14)]
    assert inside([(9, 12)], 10, 12) and not inside([(9, 12)], 11, 13)
    assert clear_of([(10, 11)], 12, 13) and not clear_of([(10, 11)], 12, 13, gap=2)
