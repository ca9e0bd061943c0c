"""Exact search in the solver: dates of at most 20 meetings reach their proven optimum.

The time bound: on the reference instances the exact search proves the optimum in a few
milliseconds (at most ~10 ms measured), after which `solve` returns at once instead of
spending its time limit on local search. `FAST` (0.5 s) leaves 50x headroom for a slow
machine and is half the ``--time-limit 1`` the CLI integration test gives each instance
(the bench allows 5 s end to end per instance with the default 3 s limit).
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import pytest

from ceylon.scheduling import solver
from ceylon.scheduling.instance import parse_instance
from ceylon.scheduling.problem import Need, Problem, violations
from ceylon.scheduling.solver import DEFAULT_TIME_LIMIT, EXACT_MEETINGS, solve

ROOT = Path(__file__).resolve().parents[3]
SHARED = ROOT.parent / "shared" / "meetings"
DATA = ROOT / "tests" / "data" / "meetings"
if not (DATA / "reference.json").exists():  # prefer the tests' copy, else the shared one
    DATA = SHARED
REFERENCE: dict[str, Any] = json.loads((DATA / "reference.json").read_text())
FAST = 0.5  # seconds: see the module docstring
DATE = "2024-07-22"


def _instance(name: str) -> Any:
    return parse_instance(json.loads((DATA / "instances" / f"{name}.json").read_text()))


def _small_instances() -> list[str]:
    names = []
    for path in sorted((DATA / "instances").glob("*.json")):
        if path.name == "index.json":
            continue
        meetings = json.loads(path.read_text())["meetings"]
        if len(meetings) <= EXACT_MEETINGS and path.stem in REFERENCE:
            names.append(path.stem)
    return names


SMALL = _small_instances()


def test_the_small_instances_are_found() -> None:
    assert {"tiny_1", "small_11", "medium_13"} <= set(SMALL)


@pytest.mark.parametrize("name", SMALL)
@pytest.mark.parametrize("seed", [0, 1, 3])
def test_small_instances_reach_their_proven_optimum_quickly(name: str, seed: int) -> None:
    reference = REFERENCE[name]
    assert reference["proven"]
    problem = _instance(name).problem()
    lines: list[str] = []
    started = time.monotonic()
    solution = solve(problem, DEFAULT_TIME_LIMIT, seed, progress=lines.append)
    elapsed = time.monotonic() - started
    assert violations(problem, solution.placements.values()) == []
    assert solution.weighted(problem) == reference["weighted"]
    exact = [line for line in lines if line.startswith("exact ")]
    assert all("proven optimal" in line and "not proven" not in line for line in exact), lines
    assert elapsed < FAST, f"{elapsed:.2f} s: {lines}"


def random_problem(rng: random.Random) -> Problem:
    """One date, 6-16 people with one or two windows, 6-20 meetings: often tight."""
    names = [f"p{i}" for i in range(rng.randint(6, 16))]
    availability = {}
    for name in names:
        windows = []
        a = 9
        for _ in range(rng.randint(1, 2)):
            a = rng.randint(a, 15)
            b = rng.randint(a + 1, 17)
            windows.append((a, b))
            a = b + 1
            if a >= 16:
                break
        availability[name] = {DATE: windows}
    needs = []
    for i in range(rng.randint(6, 20)):
        required = frozenset(rng.sample(names, rng.choice([0, 0, 0, 1, 2])))
        needs.append(Need(f"m{i}", f"m{i}", DATE, rng.randint(1, 3), rng.randint(2, 5),
                          rng.randint(1, 5), required))  # fmt: skip
    return Problem(needs, availability, 9, 17, rng.choice([0, 0, 1]))


HARD = 258  # random_problem(Random(HARD)) is not proven in 5 s: exact search runs on


def _exact(problem: Problem, deadline: float, stop: Any = solver._never) -> Any:
    day = solver._Day(problem, DATE, problem.meetings)
    state = solver._State(day)
    solver._greedy(state, solver._order(day))
    exact = solver._Exact(day, state, deadline, stop)
    return day, exact, exact.run()


@pytest.mark.parametrize("seed", range(12))
def test_exact_search_is_never_beaten_by_local_search(seed: int) -> None:
    problem = random_problem(random.Random(seed))
    day, exact, best = _exact(problem, time.monotonic() + 5.0)
    schedule = solver._assemble(problem, [day], [best])
    assert violations(problem, schedule.placements.values()) == []
    assert schedule.weighted(problem) == best.weight()
    if exact.proven:
        start = solver._State(day)
        solver._greedy(start, solver._order(day))
        local = solver._ruin_and_recreate(day, start, time.monotonic() + 0.2,
                                          random.Random(seed), solver._never)  # fmt: skip
        assert local.weight() <= best.weight()


def test_identical_meetings_take_turns() -> None:
    availability = {p: {DATE: [(9, 11)]} for p in ("a", "b", "c")}
    needs = [Need(f"m{i}", f"m{i}", DATE, 1, 2) for i in range(3)]
    problem = Problem(needs, availability, 9, 17, 0)
    day, exact, best = _exact(problem, time.monotonic() + 5.0)
    assert exact.proven and best.weight() == 2  # two hours, two seats each, three people


def test_a_stop_ends_the_exact_search_at_once_with_a_valid_schedule() -> None:
    problem = random_problem(random.Random(HARD))
    polls = 0

    def stop() -> bool:
        nonlocal polls
        polls += 1
        return polls > 50  # well inside the search (it polls every few nodes)

    started = time.monotonic()
    day, exact, best = _exact(problem, started + 30.0, stop)
    assert time.monotonic() - started < FAST
    assert exact.aborted and not exact.proven
    schedule = solver._assemble(problem, [day], [best])
    assert violations(problem, schedule.placements.values()) == []


def test_solve_stops_at_once_during_exact_search() -> None:
    problem = random_problem(random.Random(HARD))
    lines: list[str] = []
    started = time.monotonic()

    def stop() -> bool:  # the greedy takes milliseconds: then exact search is under way
        return time.monotonic() > started + 0.2

    solution = solve(problem, time_limit=30.0, progress=lines.append, stop=stop)
    assert time.monotonic() - started < 0.2 + FAST
    assert violations(problem, solution.placements.values()) == []
    assert any(line.startswith("exact ") and "not proven" in line for line in lines), lines
