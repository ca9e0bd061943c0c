"""The meeting scheduler over the protocol: the CLI on the instances, the tutorial, faults."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from ceylon.scheduling import SchedulingPlayground, TimeConstraints
from ceylon.scheduling.instance import parse_instance
from ceylon.testing import Process

from ..conftest import BEAT, ROOT, seconds

DATA = ROOT / "tests" / "data" / "meetings"
REFERENCE = json.loads((DATA / "reference.json").read_text())


def validate(instance: str, solution: Path) -> tuple[int, str]:
    """Run the shared validator as a program (it is never imported)."""
    check = Process(
        [sys.executable, str(DATA / "validate.py"), str(DATA / "instances" / f"{instance}.json"),
         str(solution), "--json"],
    )  # fmt: skip
    code = check.wait(timeout=seconds(60))
    return code, check.output()


@pytest.mark.parametrize("name", ["tiny_1", "small_11", "small_12", "small_13", "medium_11",
                                  "medium_12", "medium_13"])  # fmt: skip
def test_ceylon_meetings_solve_gives_valid_optimal_schedules(
    spawn: Any, tmp_path: Path, name: str
) -> None:
    out = tmp_path / f"{name}.json"
    run = spawn("-m", "ceylon", "meetings", "solve", str(DATA / "instances" / f"{name}.json"),
                "--out", str(out), "--time-limit", "1")  # fmt: skip
    assert run.wait(seconds(60)) == 0, run.output()
    assert "participant agents" in run.output()  # progress went to stderr
    code, report = validate(name, out)
    assert code == 0, report
    result = json.loads(report)
    assert result["valid"] and result["weighted"] == REFERENCE[name]["weighted"]


def test_stdout_gets_the_solution_json(spawn: Any) -> None:
    run = Process([sys.executable, "-m", "ceylon", "meetings", "solve",
                   str(DATA / "instances" / "tiny_1.json")], cwd=ROOT)  # fmt: skip
    assert run.wait(seconds(60)) == 0
    text = run.output()
    solution = json.loads(text[text.index("{") :])
    assert {e["meeting"] for e in solution["schedule"]} == {"Team Sync", "Project Review"}


def test_a_malformed_instance_is_refused_naming_the_field(spawn: Any, tmp_path: Path) -> None:
    data = json.loads((DATA / "instances" / "tiny_1.json").read_text())
    data["meetings"][1]["duration"] = "two"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    out = tmp_path / "out.json"
    run = spawn("-m", "ceylon", "meetings", "solve", str(bad), "--out", str(out))
    assert run.wait(seconds(30)) == 2
    assert "meetings[1].duration" in run.output()
    assert not out.exists() and not (tmp_path / "out.json.tmp").exists()
    missing = spawn("-m", "ceylon", "meetings", "solve", str(tmp_path / "nope.json"))
    assert missing.wait(seconds(30)) == 2


def test_the_tutorial_example_runs_with_the_answer_its_code_computes() -> None:
    run = Process([sys.executable, "examples/meeting_scheduling.py"], cwd=ROOT)
    assert run.wait(seconds(60)) == 0, run.output()
    lines = [line for line in run.output().splitlines() if line.startswith(("Team", "Project"))]
    assert len(lines) == 2  # its greedy walk prints one line per meeting, valid or not


def test_the_plugin_example_prints_a_valid_schedule() -> None:
    run = Process([sys.executable, "examples/meeting_plugin.py"], cwd=ROOT)
    assert run.wait(seconds(60)) == 0, run.output()
    assert "valid schedule" in run.output() and "Team Sync: 2024-07-21" in run.output()


async def test_a_participant_killed_mid_run_leaves_a_valid_schedule(
    spawn: Any, tmp_path: Path
) -> None:
    name = "small_11"
    raw = json.loads((DATA / "instances" / f"{name}.json").read_text())
    instance = parse_instance(raw)
    playground = SchedulingPlayground(
        port=0, constraints=instance.constraints, time_limit=0.5,
        **BEAT,
    )  # fmt: skip
    await playground.start()
    people: dict[str, Process] = {}
    try:
        for person in raw["participants"]:
            slots = [[w["date"], w["start"], w["end"]] for w in person["available"]]
            people[person["name"]] = spawn(
                "-m", "ceylon", "worker", "--connect", playground.address,
                "--agent", "ceylon.scheduling:ParticipantAgent", "--name", person["name"],
                "--role", "participant", "--option", f"available_slots={json.dumps(slots)}",
            )  # fmt: skip
        for person, process in people.items():
            await asyncio.to_thread(process.wait_for_line, rf"^agent {person} connected",
                                    seconds(30))  # fmt: skip
        await playground.wait_for_agents(count=len(people), role="participant",
                                         timeout=seconds(20))  # fmt: skip
        victim = "Heidi"  # required by a meeting, so its loss forces a re-plan

        def progress(line: str) -> None:
            if line.startswith("round 1: solving"):  # calendars are in, nothing is booked
                people[victim].signal(signal.SIGKILL)

        playground.meeting_plugin.progress = progress
        outputs = await playground.schedule_meetings(instance.meetings)
        figures = playground.status().plugins["meetings"]
        assert figures == {"participants": len(people) - 1, "plans run": 1, "planning": 0}
    finally:
        await playground.finish()
    entries = []
    for meeting in instance.meetings:
        output = outputs[meeting.name]
        if output.scheduled and output.time_slot is not None:
            assert victim not in output.participants
            entries.append({"meeting": meeting.name, "scheduled": True,
                            "date": output.time_slot.date, "start": output.time_slot.start_time,
                            "end": output.time_slot.end_time,
                            "participants": output.participants})  # fmt: skip
        else:
            entries.append({"meeting": meeting.name, "scheduled": False,
                            "reason": output.error})  # fmt: skip
    out = tmp_path / "after-kill.json"
    out.write_text(json.dumps({"schedule": entries}))
    code, report = validate(name, out)
    assert code == 0, report
    required_by_victim = [m.name for m in instance.meetings if victim in m.required]
    assert required_by_victim and all(not outputs[m].scheduled for m in required_by_victim)


def test_constraints_default_to_the_tutorial_sketch() -> None:
    assert TimeConstraints() == TimeConstraints(9, 17, 1)


def test_meetings_solve_drives_a_cli_playground_hosting_the_plugin(
    spawn: Any, tmp_path: Path
) -> None:
    instance = DATA / "instances" / "tiny_1.json"
    data = json.loads(instance.read_text())
    playground = spawn("-m", "ceylon", "playground", "--port", "0", "--plugin", "meetings")
    address = playground.wait_for_line(r"^listening on (\S+:\d+)", timeout=seconds(20)).group(1)
    for person in data["participants"]:  # each calendar lives in its own agent process
        worker = spawn(
            "-m", "ceylon", "worker", "--connect", address, "--agent",
            "ceylon.scheduling:ParticipantAgent", "--name", person["name"],
            "--option", f"available_slots={json.dumps(person['available'])}",
        )  # fmt: skip
        worker.wait_for_line(rf"^agent {person['name']} connected", timeout=seconds(20))
    out = tmp_path / "schedule.json"
    run = spawn("-m", "ceylon", "meetings", "solve", str(instance), "--connect", address,
                "--out", str(out), "--time-limit", "2")  # fmt: skip
    assert run.wait(seconds(60)) == 0, run.output()
    code, report = validate("tiny_1", out)
    assert code == 0, report
    assert all(entry["scheduled"] for entry in json.loads(out.read_text())["schedule"])
    # a playground without the plugin says so, once, exit 2
    bare = spawn("-m", "ceylon", "playground", "--port", "0")
    other = bare.wait_for_line(r"^listening on (\S+:\d+)", timeout=seconds(20)).group(1)
    refused = spawn("-m", "ceylon", "meetings", "solve", str(instance), "--connect", other)
    assert refused.wait(seconds(30)) == 2, refused.output()
    assert "cannot plan meetings" in refused.output()
