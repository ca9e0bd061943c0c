"""Forgetting finished task groups: by count and by age, never one still needed."""

from __future__ import annotations

import gc
import random
import weakref

import pytest

from ceylon.task.data import TaskGroup, TaskMessage, TaskStatus
from ceylon.task.manager import TaskManager
from ceylon.task.plugin import TaskPlugin


def group(name: str, n: int = 2, role: str = "r", depends_on: list[str] | None = None) -> TaskGroup:
    tasks = [
        TaskMessage(task_id=f"{name}.{i}", name=f"{name}.{i}", required_role=role) for i in range(n)
    ]
    g = TaskManager.create_task_group(name, "", tasks, depends_on=depends_on)
    g.task_id = name
    for t in g.subtasks:
        t.group_id = name
    return g


def finish(manager: TaskManager, name: str, now: float, fail: bool = False) -> None:
    """End every task of group `name` (completed, or the first one failed) and stamp `now`."""
    for task in manager.task_groups[name].subtasks:
        if task.status is TaskStatus.PENDING or task.status is TaskStatus.IN_PROGRESS:
            if fail:
                manager.failed(task.task_id, "boom")
            else:
                manager.completed(task.task_id, result=task.task_id.upper())
    manager.stamp_ended(now)


def assert_gone(manager: TaskManager, name: str, task_ids: list[str]) -> None:
    assert name not in manager.task_groups and name not in manager._groups
    assert name not in manager._ended
    for tid in task_ids:
        for table in (
            manager.tasks,
            manager.completed_tasks,
            manager.failed_tasks,
            manager.errors,
            manager._group_of,
            manager._blocked_by,
            manager._dependents,
        ):
            assert tid not in table
        assert tid not in manager._released


def test_without_limits_nothing_is_forgotten() -> None:
    m = TaskManager()
    m.add_groups([group("a")])
    finish(m, "a", 0.0)
    assert m.forget_finished(10**9) == []
    assert m.forget_finished(10**9, None, None) == []
    assert "a" in m.task_groups and len(m.completed_tasks) == 2


def test_the_count_limit_keeps_the_newest_ended_groups() -> None:
    m = TaskManager()
    m.add_groups([group(n) for n in "abcde"])
    for i, name in enumerate("cabed"):  # end order, not add order, decides
        finish(m, name, float(i))
    assert m.ended_held == 5
    assert m.forget_finished(10.0, keep=2) == ["c", "a", "b"]
    for name in "cab":
        assert_gone(m, name, [f"{name}.0", f"{name}.1"])
    assert set(m.task_groups) == {"e", "d"}
    assert set(m.completed_tasks) == {"e.0", "e.1", "d.0", "d.1"}
    assert m.completed_tasks["d.0"].result == "D.0"
    assert m.groups_forgotten == 3 and m.ended_held == 2
    assert m.forget_finished(11.0, keep=2) == []
    assert m.forget_finished(11.0, keep=0) == ["e", "d"]
    assert not m.tasks and not m.task_groups and m.all_done()


def test_the_age_limit_counts_from_the_end() -> None:
    m = TaskManager()
    m.add_groups([group("a"), group("b")])
    finish(m, "a", 0.0)
    finish(m, "b", 5.0)
    assert m.forget_finished(9.9, older_than=10.0) == []
    assert m.forget_finished(10.0, older_than=10.0) == ["a"]
    assert m.forget_finished(14.0, older_than=10.0) == []
    assert m.forget_finished(15.0, older_than=10.0) == ["b"]


def test_count_and_age_together() -> None:
    m = TaskManager()
    m.add_groups([group(n) for n in "abc"])
    for i, name in enumerate("abc"):
        finish(m, name, float(i))
    # age takes a (ended at 0), the count cap then takes b as well
    assert m.forget_finished(10.0, keep=1, older_than=10.0) == ["a", "b"]
    assert set(m.task_groups) == {"c"}


def test_groups_still_running_are_never_forgotten() -> None:
    m = TaskManager()
    m.add_groups([group("done"), group("running"), group("waiting")])
    m.started("running.0", "w")
    m.completed("running.0")
    finish(m, "done", 0.0)
    assert m.forget_finished(10**6, keep=0, older_than=0.0) == ["done"]
    assert set(m.task_groups) == {"running", "waiting"}
    assert len(m.tasks) == 4 and m.unfinished == 3
    with pytest.raises(ValueError, match="has not ended"):
        m.forget("running")


def test_a_failed_group_goes_with_its_errors() -> None:
    m = TaskManager()
    m.add_groups([group("bad")])
    finish(m, "bad", 0.0, fail=True)
    assert m.task_groups["bad"].status is TaskStatus.FAILED and len(m.errors) == 2
    assert m.forget_finished(1.0, keep=0) == ["bad"]
    assert_gone(m, "bad", ["bad.0", "bad.1"])
    assert not m.errors and not m.failed_tasks


def test_an_upstream_is_kept_until_its_dependents_end_and_then_for_the_full_time() -> None:
    m = TaskManager()
    m.add_groups([group("up"), group("down", depends_on=["up"])])
    finish(m, "up", 0.0)
    assert m.task_groups["up"].status is TaskStatus.COMPLETED
    # "down" runs: "up" stays, whatever the limits
    assert m.forget_finished(100.0, keep=0, older_than=1.0) == []
    finish(m, "down", 100.0)
    # "up" settled at 100 (when "down" ended), not at 0
    assert m.forget_finished(105.0, older_than=10.0) == []
    assert m.forget_finished(110.0, older_than=10.0) == ["up", "down"]


def test_a_failed_upstream_and_the_dependents_it_failed_go_together() -> None:
    m = TaskManager()
    m.add_groups([group("up"), group("down", depends_on=["up"])])
    finish(m, "up", 0.0, fail=True)
    assert m.task_groups["down"].status is TaskStatus.FAILED
    assert m.forget_finished(1.0, keep=0) == ["up", "down"]
    assert not m.tasks and not m.errors


def test_a_dependent_added_later_holds_a_settled_group_again() -> None:
    m = TaskManager()
    m.add_groups([group("up")])
    finish(m, "up", 0.0)
    m.add_groups([group("late", depends_on=["up"])])
    assert m.forget_finished(50.0, keep=0, older_than=1.0) == []
    finish(m, "late", 60.0)
    assert m.forget_finished(60.0, keep=1) == ["up"]  # both settled at 60; "up" ended first
    assert m.forget_finished(70.0, older_than=10.0) == ["late"]


def test_an_upstream_outlives_a_forgotten_dependent() -> None:
    m = TaskManager()
    m.add_groups([group("up"), group("down", depends_on=["up"])])
    finish(m, "up", 0.0)
    finish(m, "down", 1.0)
    m.forget("down")
    assert m.forget_finished(2.0, keep=1) == []  # "up" is the newest left
    assert m.forget_finished(2.0, keep=0) == ["up"]


def test_a_group_the_journal_still_names_waits_until_it_is_reported() -> None:
    m = TaskManager()
    m.journal = []
    m.add_groups([group("a")])
    finish(m, "a", 0.0)
    assert m.forget_finished(10.0, keep=0) == []
    m.journal.clear()  # what the plugin's flush does
    assert m.forget_finished(10.0, keep=0) == ["a"]


def test_an_unstamped_group_counts_as_ending_at_the_sweep() -> None:
    m = TaskManager()
    m.add_groups([group("a")])
    for task in m.task_groups["a"].subtasks:
        m.completed(task.task_id)
    assert m.forget_finished(100.0, older_than=10.0) == []  # stamped now, at 100
    assert m.forget_finished(110.0, older_than=10.0) == ["a"]


def test_empty_groups_end_at_once_and_can_be_forgotten() -> None:
    m = TaskManager()
    m.add_groups([TaskGroup(task_id="empty", name="empty")])
    assert m.forget_finished(0.0, keep=0) == ["empty"]


def test_after_forgetting_ids_may_be_used_again_and_the_group_is_unknown() -> None:
    m = TaskManager()
    m.add_groups([group("a")])
    finish(m, "a", 0.0)
    m.forget_finished(1.0, keep=0)
    with pytest.raises(ValueError, match="which is unknown"):
        m.validate([group("b", depends_on=["a"])])
    ready = m.add_groups([group("a")])  # the same group and task ids, anew
    assert [t.task_id for t in ready] == ["a.0", "a.1"]


def test_forgotten_tasks_are_freed() -> None:
    m = TaskManager()
    m.add_groups([group("a", n=50), group("b", n=50)])
    refs = [weakref.ref(t) for t in m.task_groups["a"].subtasks]
    finish(m, "a", 0.0)
    finish(m, "b", 1.0)
    m.forget_finished(2.0, keep=1)
    gc.collect()
    assert all(ref() is None for ref in refs)
    assert len(m.tasks) == 50


def test_random_runs_never_forget_what_is_needed() -> None:
    rng = random.Random(7)
    for _ in range(200):
        m = TaskManager()
        names: list[str] = []
        now = 0.0
        for step in range(40):
            now += rng.random()
            action = rng.random()
            if action < 0.35 or not names:
                name = f"g{step}"
                ups = [n for n in names if n in m.task_groups and rng.random() < 0.3]
                m.add_groups([group(name, n=rng.randint(0, 3), depends_on=ups)])
                names.append(name)
            elif action < 0.8:
                open_tasks = [
                    t
                    for t in m.tasks.values()
                    if t.status is TaskStatus.PENDING and t.task_id in m._released
                ]
                if open_tasks:
                    t = rng.choice(open_tasks)
                    if rng.random() < 0.2:
                        m.failed(t.task_id, "x")
                    else:
                        m.completed(t.task_id)
                m.stamp_ended(now)
            else:
                keep = rng.choice([None, 0, 1, 3])
                older = rng.choice([None, 0.5, 3.0])
                before = {gid: g.status for gid, g in m.task_groups.items()}
                gone = m.forget_finished(now, keep, older)
                for gid in gone:
                    assert before[gid] in (TaskStatus.COMPLETED, TaskStatus.FAILED)
                for gid, g in m.task_groups.items():
                    # every group still held that depends on one forgotten had ended
                    if any(up in gone for up in g.depends_on):
                        assert before[gid] in (TaskStatus.COMPLETED, TaskStatus.FAILED)
                if keep is not None:
                    settled = [
                        gid
                        for gid in m.task_groups
                        if gid in m._ended
                        and all(
                            d in m._ended or d not in m._groups
                            for d in m.task_groups[gid].required_by
                        )
                    ]
                    assert len(settled) <= keep
            # the tables agree with each other whatever was forgotten
            assert set(m.tasks) == set(m._group_of)
            assert set(m.completed_tasks) | set(m.failed_tasks) <= set(m.tasks)
            assert set(m.errors) == set(m.failed_tasks)
            assert all(m._group_of[t] in m.task_groups for t in m.tasks)
            assert m.unfinished == sum(
                t.status not in (TaskStatus.COMPLETED, TaskStatus.FAILED) for t in m.tasks.values()
            )


# -- the plugin ---------------------------------------------------------------------------


def test_the_plugin_checks_its_limits() -> None:
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="keep_finished_groups"):
            TaskPlugin(keep_finished_groups=bad)  # type: ignore[arg-type]
    for bad_for in (-1.0, float("nan"), "1", False):
        with pytest.raises(ValueError, match="keep_finished_for"):
            TaskPlugin(keep_finished_for=bad_for)  # type: ignore[arg-type]
    plugin = TaskPlugin(keep_finished_groups=None, keep_finished_for=None)
    assert plugin.keep_finished_groups is None and plugin.keep_finished_for is None
    defaults = TaskPlugin()
    assert (defaults.keep_finished_groups, defaults.keep_finished_for) == (1000, 3600.0)


def test_the_plugin_forgets_past_the_count_as_groups_come_and_counts_them() -> None:
    plugin = TaskPlugin(keep_finished_groups=2)
    for i in range(5):
        plugin.add_groups([TaskGroup(task_id=f"e{i}", name=f"e{i}")])  # end at once
    assert set(plugin.manager.task_groups) == {"e3", "e4"}
    assert plugin.status()["groups forgotten"] == 3


def test_the_plugin_sweep_forgets_by_age_and_clears_the_assigner() -> None:
    plugin = TaskPlugin(keep_finished_for=10.0)
    plugin.add_groups([group("a", role="nobody")])
    assert plugin.assigner.waiting("nobody") == 2
    plugin.role_timeout = 0.0
    plugin.check_roles(0.0)  # the role's tasks fail
    assert plugin.manager.task_groups["a"].status is TaskStatus.FAILED
    plugin.assigner.attempts["a.0"] = 1  # as if it had run once
    ended = plugin.manager._groups["a"].ended_at
    assert ended is not None
    assert plugin.forget_finished(ended + 9.0) == []
    assert plugin.forget_finished(ended + 10.0) == ["a"]
    assert not plugin.manager.tasks and not plugin.manager.errors
    assert not plugin.assigner.attempts
    assert not plugin.assigner._role_of and not plugin.assigner._priority
    status = plugin.status()
    assert (status["groups"], status["tasks"], status["groups forgotten"]) == (0, 0, 1)


def test_tables_are_rebuilt_in_place_once_most_was_forgotten() -> None:
    m = TaskManager()
    tasks, completed = m.tasks, m.completed_tasks
    m.add_groups([group(f"g{i}", n=100) for i in range(30)])
    for i in range(30):
        finish(m, f"g{i}", float(i))
    m.forget_finished(100.0, keep=2)
    assert m.tasks is tasks and m.completed_tasks is completed  # the same objects
    assert list(m.tasks) == [f"g{i}.{j}" for i in (28, 29) for j in range(100)]  # in order
    assert m._forgotten_tasks < 1024  # a rebuild happened on the way
    assert m.completed_tasks["g29.5"].result == "G29.5"
