"""Groups that could never end are refused; what only a run sets is reset (sans-I/O)."""

from __future__ import annotations

import pytest

from ceylon.peer import AgentDetail
from ceylon.task import TaskPlugin
from ceylon.task.data import GoalStatus, TaskGroup, TaskGroupGoal, TaskMessage, TaskStatus
from ceylon.task.manager import TaskManager


def task(tid: str, role: str = "a") -> TaskMessage:
    return TaskMessage(task_id=tid, name=tid, required_role=role)


def group(name: str, *tids: str, **kw: object) -> TaskGroup:
    g = TaskManager.create_task_group(name, "", [task(t) for t in tids], **kw)  # type: ignore[arg-type]
    g.task_id = name
    for t in g.subtasks:
        t.group_id = name
    return g


def refused(manager: TaskManager, groups: list[TaskGroup]) -> str:
    with pytest.raises(ValueError) as info:
        manager.add_groups(groups)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_dependency_cycle_is_refused_and_named() -> None:
    manager = TaskManager()
    cyclic = group("g", "x", "y", "z", "free", dependencies={"x": ["y"], "y": ["z"], "z": ["x"]})
    message = refused(manager, [cyclic])
    assert "cycle" in message
    # the cycle is named, in its order, back to where it started
    assert any(
        f"{a!r} -> {b!r} -> {c!r} -> {a!r}" in message
        for a, b, c in [("x", "y", "z"), ("y", "z", "x"), ("z", "x", "y")]
    ), message
    assert not manager.tasks and not manager.task_groups  # nothing was added


def test_a_two_task_cycle_and_a_long_chain() -> None:
    assert "'a' -> 'b' -> 'a'" in refused(
        TaskManager(), [group("g", "a", "b", dependencies={"a": ["b"], "b": ["a"]})]
    )
    n = 5000  # deep enough that a recursive search would overflow
    ids = [f"t{i}" for i in range(n)]
    chain = {ids[i]: [ids[i + 1]] for i in range(n - 1)}
    manager = TaskManager()
    assert [t.task_id for t in manager.add_groups([group("ok", *ids, dependencies=chain)])] == [
        ids[-1]
    ]
    looped = {**{f"u{i}": [f"u{i + 1}"] for i in range(n - 1)}, f"u{n - 1}": ["u0"]}
    assert "cycle" in refused(TaskManager(), [group("loop", *looped, dependencies=looped)])


def test_a_self_dependency_is_refused() -> None:
    message = refused(TaskManager(), [group("g", "x", dependencies={"x": ["x"]})])
    assert message == "task group 'g': task 'x' depends on itself"


def test_unknown_dependency_ids_are_refused() -> None:
    assert "'nope'" in refused(TaskManager(), [group("g", "x", dependencies={"x": ["nope"]})])
    assert "'ghost'" in refused(TaskManager(), [group("g", "x", dependencies={"ghost": ["x"]})])


def test_group_depends_on_an_unknown_group_itself_or_a_cycle_is_refused() -> None:
    manager = TaskManager()
    message = refused(manager, [group("g", "x", depends_on=["missing"])])
    assert message == "task group 'g' depends on group 'missing', which is unknown"
    assert refused(manager, [group("g", "x", depends_on=["g"])]) == (
        "task group 'g' depends on itself"
    )
    a = group("A", "a1", depends_on=["C"])
    b = group("B", "b1", depends_on=["A"])
    c = group("C", "c1", depends_on=["B"])
    message = refused(manager, [a, b, c])
    assert "cycle" in message and all(repr(n) in message for n in "ABC"), message
    assert not manager.task_groups
    # a group added before, or alongside, is known
    first = group("first", "f1")
    manager.add_groups([first])
    manager.add_groups([group("second", "s1", depends_on=["first", "third"]), group("third", "t1")])
    assert set(manager.task_groups) == {"first", "second", "third"}


def test_ids_repeated_within_one_call_are_refused() -> None:
    manager = TaskManager()
    assert "repeats task_id 'x'" in refused(manager, [group("g1", "x"), group("g2", "x")])
    assert "already added" in refused(manager, [group("g", "x"), group("g", "y")])
    assert not manager.tasks


def test_statuses_assignments_and_results_are_reset() -> None:
    goal = TaskGroupGoal("g", "", lambda groups, done: False, status=GoalStatus.ACHIEVED)
    g = group("g", "x", "y", "z", goal=goal)
    g.status = TaskStatus.COMPLETED
    g.required_by = ["someone"]
    x, y, z = g.subtasks
    x.status, x.completed, x.result, x.assigned_to = TaskStatus.COMPLETED, True, "fake", "w"
    x.start_time, x.end_time = 1.0, 2.0
    y.status = TaskStatus.IN_PROGRESS
    z.status = TaskStatus.FAILED
    manager = TaskManager()
    ready = manager.add_groups([g])
    assert [t.task_id for t in ready] == ["x", "y", "z"]  # all run: none counts as done
    for t in (x, y, z):
        assert t.status is TaskStatus.PENDING and t.assigned_to is None
        assert t.result is None and not t.completed and t.start_time is t.end_time is None
    assert g.status is TaskStatus.PENDING and g.required_by == []
    assert goal.status is GoalStatus.NOT_STARTED
    assert not manager.completed_tasks and manager.unfinished == 3
    for t in ready:
        manager.started(t.task_id, "w")
        manager.completed(t.task_id, "real")
    assert manager.task_groups["g"].status is TaskStatus.COMPLETED and x.result == "real"


def test_a_group_whose_upstream_already_failed_fails_at_once() -> None:
    manager = TaskManager()
    manager.add_groups([group("up", "u")])
    manager.failed("u", "boom")
    assert manager.add_groups([group("down", "d", depends_on=["up"])]) == []
    assert manager.task_groups["down"].status is TaskStatus.FAILED
    assert manager.errors["d"] == "group 'up' failed" and manager.all_done()


def test_the_journal_tells_every_end_in_order() -> None:
    manager = TaskManager()
    manager.journal = []
    manager.add_groups(
        [group("g", "x", "y", dependencies={"y": ["x"]}), group("h", "z", depends_on=["g"])]
    )
    manager.started("x", "w")
    manager.failed("x", "boom")
    assert manager.journal == [
        ("task", "x"),
        ("task", "y"),
        ("group", "g"),
        ("task", "z"),
        ("group", "h"),
    ]


def worker(extra: dict[str, object]) -> AgentDetail:
    return AgentDetail("id-" + str(extra), "w", "a", "", {"task_worker": True, **extra})


@pytest.mark.parametrize(
    ("declared", "slots"),
    [
        ({"max_concurrent_tasks": 10**6}, 64),
        ({"max_concurrent_tasks": 64}, 64),
        ({"max_concurrent_tasks": 3}, 3),
        ({"max_concurrent_tasks": 0}, 1),
        ({"max_concurrent_tasks": -5}, 1),
        ({"max_concurrent_tasks": "lots"}, 1),
        ({"max_concurrent_tasks": 2.5}, 1),
        ({"max_concurrent_tasks": True}, 1),
        ({"max_concurrent_tasks": None}, 1),
        ({}, 1),
    ],
)
def test_the_plugin_caps_what_a_worker_declares(declared: dict[str, object], slots: int) -> None:
    plugin = TaskPlugin()
    detail = worker(declared)
    plugin.agent_joined(detail)
    assert plugin.assigner.workers[detail.id].capacity == slots


def test_max_worker_slots_is_set_and_checked() -> None:
    plugin = TaskPlugin(max_worker_slots=5)
    detail = worker({"max_concurrent_tasks": 100})
    plugin.agent_joined(detail)
    assert plugin.assigner.workers[detail.id].capacity == 5
    for bad in (0, -1, 1.5, "8"):
        with pytest.raises(ValueError, match="max_worker_slots"):
            TaskPlugin(max_worker_slots=bad)  # type: ignore[arg-type]
