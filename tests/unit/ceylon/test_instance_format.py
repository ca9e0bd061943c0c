"""The strict meeting-instance format: named errors, the shipped instances, the JSON Schema."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ceylon.scheduling import instance as instance_module
from ceylon.scheduling.instance import FORMAT_HELP, InstanceError, json_schema, parse_instance

ROOT = Path(__file__).resolve().parents[3]
FOLDERS = [ROOT / "tests" / "data" / "meetings" / "instances",
           ROOT.parent / "shared" / "meetings" / "instances"]  # fmt: skip
SHIPPED = sorted(
    path for folder in FOLDERS if folder.is_dir()
    for path in folder.glob("*.json") if path.name != "index.json"
)  # fmt: skip

GOOD: dict[str, Any] = {
    "name": "t",
    "participants": [
        {"name": "Alice", "available": [{"date": "2024-07-21", "start": 9, "end": 12}]},
        {"name": "Bob", "available": [{"date": "2024-07-21", "start": 10, "end": 13}]},
    ],
    "meetings": [
        {
            "name": "Team Sync",
            "date": "2024-07-21",
            "duration": 1,
            "minimum_participants": 2,
            "priority": 2,
            "required": ["Alice"],
        },
        {"name": "Review", "date": "2024-07-21", "duration": 2, "minimum_participants": 1},
    ],
    "constraints": {"earliest_start": 9, "latest_end": 18, "min_gap": 0},
}


def _set(data: Any, path: tuple[Any, ...], value: Any) -> None:
    for key in path[:-1]:
        data = data[key]
    data[path[-1]] = value


def _rename(data: Any, path: tuple[Any, ...], new: str) -> None:
    for key in path[:-1]:
        data = data[key]
    data[new] = data.pop(path[-1])


def _error(data: Any) -> InstanceError:
    with pytest.raises(InstanceError) as info:
        parse_instance(data)
    error = info.value
    assert "\n" not in str(error)
    assert str(error).startswith(f"{error.field}: ")
    return error


# --- every shipped instance --------------------------------------------------------------


def test_there_are_shipped_instances() -> None:
    assert len(SHIPPED) >= 10


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.parent.parent.name}/{p.name}")
def test_every_shipped_instance_parses_and_fits_the_schema(path: Path) -> None:
    data = json.loads(path.read_text())
    instance = parse_instance(data)
    assert instance.name == data["name"]
    assert len(instance.meetings) == len(data["meetings"])
    assert _violations(json_schema(), data) == []


def test_the_good_instance_reads() -> None:
    instance = parse_instance(GOOD)
    assert instance.meetings[0].required == ["Alice"] and instance.meetings[0].priority == 2
    assert instance.meetings[1].required == [] and instance.meetings[1].priority == 1
    assert instance.participants["Bob"][0].start_time == 10
    assert _violations(json_schema(), GOOD) == []


# --- each kind of mistake ----------------------------------------------------------------


@pytest.mark.parametrize(
    "path, new, field, suggestion",
    [
        (("meetings", 0, "priority"), "priorty", "meetings[0].priorty", "priority"),
        (("meetings", 1, "duration"), "durration", "meetings[1].durration", "duration"),
        (("meetings",), "meeting", "instance.meeting", "meetings"),
        (("constraints", "min_gap"), "min_gaps", "constraints.min_gaps", "min_gap"),
        (("participants", 1, "available"), "availability", "participants[1].availability",
         "available"),
        (("participants", 0, "available", 0, "start"), "Start",
         "participants[0].available[0].Start", "start"),
    ],
)  # fmt: skip
def test_an_unknown_key_is_named_with_a_suggestion(
    path: tuple[Any, ...], new: str, field: str, suggestion: str
) -> None:
    data = copy.deepcopy(GOOD)
    _rename(data, path, new)
    error = _error(data)
    assert error.field == field
    assert f"unknown key {new!r}" in str(error)
    assert f"did you mean {suggestion!r}?" in str(error)
    assert _violations(json_schema(), data) != []


def test_an_unknown_key_without_a_near_miss_lists_the_keys() -> None:
    data = copy.deepcopy(GOOD)
    data["meetings"][0]["colour"] = "red"
    error = _error(data)
    assert error.field == "meetings[0].colour"
    assert "did you mean" not in str(error)
    assert "name, date, duration, minimum_participants, priority, required" in str(error)


@pytest.mark.parametrize(
    "path, value, field, says",
    [
        # dates
        (("meetings", 0, "date"), "03/03/2025", "meetings[0].date", "YYYY-MM-DD"),
        (("meetings", 0, "date"), "2025-3-3", "meetings[0].date", "YYYY-MM-DD"),
        (("meetings", 0, "date"), "20250303", "meetings[0].date", "YYYY-MM-DD"),
        (("meetings", 0, "date"), 20250303, "meetings[0].date", "YYYY-MM-DD"),
        (("participants", 1, "available", 0, "date"), "03/03/2025",
         "participants[1].available[0].date", "YYYY-MM-DD"),
        (("participants", 0, "available", 0, "date"), "2025-02-30",
         "participants[0].available[0].date", "not a real date"),
        # times
        (("participants", 0, "available", 0, "start"), "9:00",
         "participants[0].available[0].start", "whole hour 0-24"),
        (("participants", 0, "available", 0, "end"), 12.5,
         "participants[0].available[0].end", "whole hour 0-24"),
        (("participants", 0, "available", 0, "end"), 25,
         "participants[0].available[0].end", "whole hour 0-24"),
        (("constraints", "earliest_start"), "09:00", "constraints.earliest_start", "whole hour"),
        (("participants", 0, "available", 0, "end"), 8,
         "participants[0].available[0].end", "8 is not after start 9"),
        (("participants", 0, "available", 0, "end"), 9,
         "participants[0].available[0].end", "9 is not after start 9"),
        (("constraints", "latest_end"), 9, "constraints.latest_end", "not after earliest_start"),
        # durations, counts, priorities
        (("meetings", 0, "duration"), 0, "meetings[0].duration", ">= 1"),
        (("meetings", 0, "duration"), 1.5, "meetings[0].duration", ">= 1"),
        (("meetings", 0, "duration"), "1", "meetings[0].duration", ">= 1"),
        (("meetings", 0, "minimum_participants"), 0, "meetings[0].minimum_participants", ">= 1"),
        (("meetings", 0, "priority"), 0, "meetings[0].priority", ">= 1"),
        (("meetings", 0, "priority"), "high", "meetings[0].priority", ">= 1"),
        (("meetings", 0, "priority"), True, "meetings[0].priority", ">= 1"),
        (("constraints", "min_gap"), -1, "constraints.min_gap", ">= 0"),
        # shapes
        (("meetings", 0, "required"), "Alice", "meetings[0].required", "expected a list"),
        (("meetings", 0, "required"), None, "meetings[0].required", "expected a list"),
        (("meetings", 0, "name"), "", "meetings[0].name", "non-empty"),
        (("participants", 0), "Alice", "participants[0]", "expected an object"),
    ],
)  # fmt: skip
def test_a_bad_value_is_named(path: tuple[Any, ...], value: Any, field: str, says: str) -> None:
    data = copy.deepcopy(GOOD)
    _set(data, path, value)
    error = _error(data)
    assert error.field == field
    assert says in error.reason


def test_a_missing_key_is_named() -> None:
    data = copy.deepcopy(GOOD)
    del data["meetings"][1]["minimum_participants"]
    error = _error(data)
    assert str(error) == "meetings[1].minimum_participants: missing"


def test_a_required_person_who_is_not_a_participant_is_named() -> None:
    data = copy.deepcopy(GOOD)
    data["meetings"][0]["required"] = ["Alice", "Zoe"]
    error = _error(data)
    assert str(error) == (
        "meetings[0].required[1]: 'Zoe', required by meeting 'Team Sync', is not a participant"
    )


def test_a_misspelt_required_person_gets_a_suggestion() -> None:
    data = copy.deepcopy(GOOD)
    data["meetings"][1]["required"] = ["Bobb"]
    error = _error(data)
    assert error.field == "meetings[1].required[0]"
    assert "'Bobb', required by meeting 'Review', is not a participant" in str(error)
    assert "did you mean 'Bob'?" in str(error)


def test_a_required_person_listed_twice_or_not_a_name_is_refused() -> None:
    data = copy.deepcopy(GOOD)
    data["meetings"][0]["required"] = ["Alice", "Alice"]
    assert _error(data).field == "meetings[0].required[1]"
    data["meetings"][0]["required"] = [{"name": "Alice"}]
    assert _error(data).field == "meetings[0].required[0]"


def test_duplicate_names_are_refused() -> None:
    data = copy.deepcopy(GOOD)
    data["participants"][1]["name"] = "Alice"
    assert str(_error(data)) == "participants[1].name: 'Alice' appears twice"
    data = copy.deepcopy(GOOD)
    data["meetings"][1]["name"] = "Team Sync"
    assert str(_error(data)) == "meetings[1].name: 'Team Sync' appears twice"


def test_a_non_object_instance_is_refused() -> None:
    assert str(_error([GOOD])).startswith("instance: expected an object")


def test_the_cli_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    data = copy.deepcopy(GOOD)
    data["meetings"][0]["date"] = "03/03/2025"
    bad, out = tmp_path / "bad.json", tmp_path / "out.json"
    bad.write_text(json.dumps(data))
    run = subprocess.run(
        [sys.executable, "-m", "ceylon", "meetings", "solve", str(bad), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert f"error: {bad}: meetings[0].date: " in run.stderr
    assert run.stdout == "" and not out.exists()


# --- the help text -----------------------------------------------------------------------


def test_the_help_names_every_field_and_the_tutorial_types() -> None:
    for required, optional in instance_module._KEYS.values():
        for key in (*required, *optional):
            assert re.search(rf"^\s+{key}\s", FORMAT_HELP, re.M), key
    for name in ("TimeSlot(date, start_time=start, end_time=end)", "Meeting(", "TimeConstraints(",
                 "ParticipantAgent(", "YYYY-MM-DD", "instance.schema.json"):  # fmt: skip
        assert name in FORMAT_HELP
    assert max(len(line) for line in FORMAT_HELP.splitlines()) <= 90


def test_the_help_example_is_a_valid_instance() -> None:
    example = json.loads(FORMAT_HELP.split("example:\n", 1)[1].split("\n\n", 1)[0])
    instance = parse_instance(example)
    assert instance.meetings[0].required == ["Alice"]
    assert _violations(json_schema(), example) == []


# --- the JSON Schema ---------------------------------------------------------------------

# The keywords the minimal checker below understands (annotations are ignored).
_ANNOTATIONS = {"$schema", "$defs", "title", "description", "default", "format", "examples"}
_KEYWORDS = {"type", "required", "properties", "additionalProperties", "items", "minimum",
             "maximum", "pattern", "minLength", "uniqueItems", "$ref"}  # fmt: skip


def _subschemas(schema: Any) -> list[dict[str, Any]]:
    found = [schema]
    for key in ("properties", "$defs"):
        for sub in schema.get(key, {}).values():
            found += _subschemas(sub)
    if isinstance(schema.get("items"), dict):
        found += _subschemas(schema["items"])
    return found


def _violations(root: dict[str, Any], value: Any, schema: Any = None, at: str = "$") -> list[str]:
    """A tiny JSON Schema checker for the keywords in `_KEYWORDS` (no jsonschema installed)."""
    schema = root if schema is None else schema
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        found = _violations(root, value, target, at)
    else:
        found = []
    kinds = {"object": dict, "array": list, "string": str, "integer": int}
    kind = schema.get("type")
    if kind is not None:
        if not isinstance(value, kinds[kind]) or isinstance(value, bool):
            return [*found, f"{at}: not {kind}"]
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                found.append(f"{at}.{key}: missing")
        properties = schema.get("properties", {})
        for key, item in value.items():
            if key in properties:
                found += _violations(root, item, properties[key], f"{at}.{key}")
            elif schema.get("additionalProperties") is False:
                found.append(f"{at}.{key}: not allowed")
    if isinstance(value, list):
        if "items" in schema:
            for i, item in enumerate(value):
                found += _violations(root, item, schema["items"], f"{at}[{i}]")
        if schema.get("uniqueItems") and len({json.dumps(v) for v in value}) < len(value):
            found.append(f"{at}: items not unique")
    if isinstance(value, int) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            found.append(f"{at}: below minimum")
        if "maximum" in schema and value > schema["maximum"]:
            found.append(f"{at}: above maximum")
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            found.append(f"{at}: does not match {schema['pattern']}")
        if len(value) < schema.get("minLength", 0):
            found.append(f"{at}: too short")
    return found


def test_the_schema_is_draft_2020_12_and_uses_only_checked_keywords() -> None:
    schema = json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    for sub in _subschemas(schema):
        assert set(sub) <= _ANNOTATIONS | _KEYWORDS, set(sub) - _ANNOTATIONS - _KEYWORDS
        if sub.get("type") == "object":
            assert sub["additionalProperties"] is False


def test_the_schema_has_the_parsers_keys() -> None:
    schema = json_schema()
    defs = schema["$defs"]
    objects = {"instance": schema, "constraints": defs["constraints"],
               "participant": defs["participant"], "window": defs["window"],
               "meeting": defs["meeting"]}  # fmt: skip
    assert set(objects) == set(instance_module._KEYS)
    for kind, (required, optional) in instance_module._KEYS.items():
        assert list(objects[kind]["required"]) == list(required), kind
        assert set(objects[kind]["properties"]) == {*required, *optional}, kind


def test_the_schema_file_is_shipped_in_the_package() -> None:
    path = Path(instance_module.__file__).with_name("instance.schema.json")
    assert json.loads(path.read_text()) == json_schema()
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"scheduling/instance.schema.json"' in pyproject


@pytest.mark.parametrize(
    "path, value",
    [
        (("meetings", 0, "date"), "03/03/2025"),
        (("participants", 0, "available", 0, "start"), "9:00"),
        (("meetings", 0, "duration"), 0),
        (("meetings", 0, "priority"), 0),
        (("meetings", 0, "required"), ["Alice", "Alice"]),
        (("constraints", "latest_end"), 25),
    ],
)
def test_the_schema_refuses_what_it_can_express(path: tuple[Any, ...], value: Any) -> None:
    data = copy.deepcopy(GOOD)
    _set(data, path, value)
    assert _violations(json_schema(), data) != []
    _error(data)  # and so does the reader
