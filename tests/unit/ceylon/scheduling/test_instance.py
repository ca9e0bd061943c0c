from __future__ import annotations

import copy
from typing import Any

import pytest

from ceylon.scheduling.instance import InstanceError, parse_instance, solution_json
from ceylon.scheduling.problem import Placement, Solution

GOOD: dict[str, Any] = {
    "name": "t",
    "participants": [{"name": "A", "available": [{"date": "2024-07-21", "start": 9, "end": 12}]}],
    "meetings": [
        {
            "name": "M",
            "date": "2024-07-21",
            "duration": 1,
            "minimum_participants": 1,
            "priority": 2,
            "required": ["A"],
        }
    ],  # fmt: skip
    "constraints": {"earliest_start": 9, "latest_end": 18, "min_gap": 0},
}


def test_a_good_instance_reads() -> None:
    instance = parse_instance(GOOD)
    assert instance.meetings[0].required == ["A"] and instance.meetings[0].priority == 2
    assert instance.constraints.latest_end == 18
    problem = instance.problem()
    assert problem.availability == {"A": {"2024-07-21": [(9, 12)]}}


@pytest.mark.parametrize(
    "path, value, field",
    [
        (("name",), None, "instance.name"),
        (("constraints", "latest_end"), "late", "constraints.latest_end"),
        (("constraints", "latest_end"), 8, "constraints.latest_end"),
        (("participants", 0, "available", 0, "end"), 9, "participants[0].available[0].end"),
        (("participants", 0, "available", 0, "start"), 30, "participants[0].available[0].start"),
        (("meetings", 0, "duration"), 0, "meetings[0].duration"),
        (("meetings", 0, "minimum_participants"), True, "meetings[0].minimum_participants"),
        (("meetings", 0, "required"), "A", "meetings[0].required"),
        (("meetings", 0, "priority"), -1, "meetings[0].priority"),
    ],
)
def test_a_bad_field_is_named(path: tuple[Any, ...], value: Any, field: str) -> None:
    data = copy.deepcopy(GOOD)
    target = data
    for key in path[:-1]:
        target = target[key]
    if value is None:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    with pytest.raises(InstanceError) as info:
        parse_instance(data)
    assert info.value.field == field
    assert str(info.value).startswith(field)


def test_duplicates_are_refused() -> None:
    data = copy.deepcopy(GOOD)
    data["meetings"].append(dict(data["meetings"][0]))
    with pytest.raises(InstanceError, match=r"meetings\[1\].name"):
        parse_instance(data)


def test_solution_json() -> None:
    instance = parse_instance(GOOD)
    placed = Solution({"M": Placement("M", "2024-07-21", 9, 10, ("A",))}, {})
    assert solution_json(instance, placed, solver="x") == {
        "schedule": [
            {
                "meeting": "M",
                "scheduled": True,
                "date": "2024-07-21",
                "start": 9,
                "end": 10,
                "participants": ["A"],
            }
        ],  # fmt: skip
        "solver": "x",
    }
    unplaced = Solution({}, {"M": "no room"})
    entry = solution_json(instance, unplaced)["schedule"][0]
    assert entry == {"meeting": "M", "scheduled": False, "reason": "no room"}
