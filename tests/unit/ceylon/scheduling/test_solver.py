"""The solver without sockets: always valid, optimal where exhaustive search can tell."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import pytest

from ceylon.scheduling.instance import parse_instance
from ceylon.scheduling.problem import Need, Placement, Problem, violations
from ceylon.scheduling.solver import solve

DATA = Path(__file__).resolve().parents[3] / "data" / "meetings"


def brute_force(problem: Problem) -> int:
    """Best weighted count by trying every combination (tiny problems only)."""
    options: list[list[Placement | None]] = []
    people = sorted(problem.availability)
    for need in problem.meetings:
        mine: list[Placement | None] = [None]
        for start in range(problem.earliest, problem.latest - need.duration + 1):
            for group in itertools.combinations(people, need.seats):
                placement = Placement(need.id, need.date, start, start + need.duration, group)
                if not violations(_alone(problem, need), [placement]):
                    mine.append(placement)
        options.append(mine)
    weight = {m.id: m.priority for m in problem.meetings}
    best = 0
    for combo in itertools.product(*options):
        chosen = [p for p in combo if p is not None]
        total = sum(weight[p.meeting_id] for p in chosen)
        if total > best and not violations(problem, chosen):
            best = total
    return best


def _alone(problem: Problem, need: Need) -> Problem:
    return Problem([need], problem.availability, problem.earliest, problem.latest,
                   problem.min_gap)  # fmt: skip


def random_problem(rng: random.Random, people: int, meetings: int) -> Problem:
    date = "2024-07-22"
    names = [f"p{i}" for i in range(people)]
    availability = {}
    for name in names:
        windows = []
        for _ in range(rng.randint(1, 2)):
            a = rng.randint(9, 12)
            windows.append((a, rng.randint(a + 1, 14)))
        availability[name] = {date: windows}
    needs = []
    for i in range(meetings):
        required = frozenset(rng.sample(names, rng.randint(0, 1)))
        needs.append(Need(f"m{i}", f"m{i}", date, rng.randint(1, 2), rng.randint(1, 3),
                          rng.randint(1, 3), required))  # fmt: skip
    return Problem(needs, availability, 9, 14, rng.choice([0, 0, 1]))


@pytest.mark.parametrize("seed", range(40))
def test_random_small_problems_are_solved_validly_and_optimally(seed: int) -> None:
    rng = random.Random(seed)
    problem = random_problem(rng, people=4, meetings=rng.randint(2, 3))
    solution = solve(problem, time_limit=0.2, seed=seed)
    assert violations(problem, solution.placements.values()) == []
    assert solution.weighted(problem) == brute_force(problem)
    assert set(solution.placements) | set(solution.reasons) == {m.id for m in problem.meetings}


@pytest.mark.parametrize("seed", range(10))
def test_random_larger_problems_are_always_valid(seed: int) -> None:
    rng = random.Random(1000 + seed)
    problem = random_problem(rng, people=25, meetings=30)
    solution = solve(problem, time_limit=0.3, seed=seed)
    assert violations(problem, solution.placements.values()) == []


@pytest.mark.parametrize("name", ["tiny_1", "small_11", "small_12", "small_13", "medium_11",
                                  "medium_12", "medium_13"])  # fmt: skip
def test_reference_instances_reach_the_optimum(name: str) -> None:
    instance = parse_instance(json.loads((DATA / "instances" / f"{name}.json").read_text()))
    reference = json.loads((DATA / "reference.json").read_text())[name]
    problem = instance.problem()
    solution = solve(problem, time_limit=2.0)
    assert violations(problem, solution.placements.values()) == []
    assert solution.weighted(problem) == reference["weighted"]


def test_reasons_name_the_cause() -> None:
    date = "2024-07-22"
    availability = {"a": {date: [(9, 12)]}, "b": {date: [(13, 15)]}}
    needs = [
        Need("long", "long", date, 12, 1),
        Need("boss", "boss", date, 1, 1, 1, frozenset({"ghost"})),
        Need("crowd", "crowd", date, 1, 2),
        Need("first", "first", date, 3, 1, 5, frozenset({"a"})),
        Need("second", "second", date, 3, 1, 1, frozenset({"a"})),
    ]
    solution = solve(Problem(needs, availability, 9, 17, 0), time_limit=0.1)
    reasons = solution.reasons
    assert "does not fit in the day" in reasons["long"]
    assert "required ghost never available" in reasons["boss"]
    assert "never 2 people free together" in reasons["crowd"]
    assert "first" in solution.placements
    assert "lost to higher-priority meetings" in reasons["second"]


def test_custom_rules_are_respected() -> None:
    date = "2024-07-22"
    availability = {"a": {date: [(9, 17)]}}
    problem = Problem([Need("m", "m", date, 1, 1)], availability, 9, 17, 0,
                      allow=lambda need, start: start >= 15)  # fmt: skip
    solution = solve(problem, time_limit=0.1)
    assert solution.placements["m"].start >= 15


def test_violations_catch_every_rule() -> None:
    date = "2024-07-22"
    availability = {"a": {date: [(9, 12)]}, "b": {date: [(9, 17)]}}
    needs = [Need("x", "x", date, 2, 2, 1, frozenset({"b"})), Need("y", "y", date, 1, 1)]
    problem = Problem(needs, availability, 9, 17, 1)
    bad = [
        Placement("x", date, 11, 13, ("a", "b")),  # a leaves at 12
        Placement("y", date, 13, 14, ("b",)),  # less than min_gap after x
        Placement("z", date, 9, 10, ("a",)),  # no such meeting
    ]
    found = " | ".join(violations(problem, bad))
    assert "a is not available" in found and "clash" in found and "unknown meeting" in found
