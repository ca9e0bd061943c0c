"""The task core without sockets: manager and assigner driven by random event sequences."""

from __future__ import annotations

import random
from typing import Any

import pytest

from ceylon.task.assign import Assigner
from ceylon.task.data import GoalStatus, TaskGroupGoal, TaskMessage, TaskStatus
from ceylon.task.manager import TaskManager

ROLES = ("a", "b")


def task(tid: str, role: str) -> TaskMessage:
    return TaskMessage(task_id=tid, name=tid, description="", duration=0, required_role=role)


class Sim:
    """Manager + assigner, as the plugin glues them, with invariant checks."""

    def __init__(self, max_retries: int = 0) -> None:
        self.manager = TaskManager()
        self.assigner = Assigner(max_retries)
        self.ends: dict[str, int] = {}
        self.goal_seen_true: set[str] = set()

    def dispatch(self, assignments: list[tuple[str, str]]) -> None:
        for task_id, worker_id in assignments:
            slot = self.assigner.workers[worker_id]
            t = self.manager.tasks[task_id]
            assert t.required_role == slot.role, "role mismatch"
            assert t.status is TaskStatus.PENDING, f"{task_id} handed out twice"
            self.assert_ready(task_id)
            self.manager.started(task_id, worker_id)

    def assert_ready(self, task_id: str) -> None:
        group = self.manager.group_of(task_id)
        for need in group.dependencies.get(task_id, ()):
            assert need in self.manager.completed_tasks, f"{task_id} ran before {need}"
        for gid in group.depends_on:
            assert self.manager.task_groups[gid].status is TaskStatus.COMPLETED

    def ready(self, tasks: list[TaskMessage]) -> None:
        for t in tasks:
            self.assigner.add(t.task_id, t.required_role, self.manager.group_of(t.task_id).priority)
        for role in {t.required_role for t in tasks}:
            self.dispatch(self.assigner.assign(role))

    def add(self, groups: list[Any]) -> None:
        self.ready(self.manager.add_groups(groups))

    def join(self, wid: str, role: str, cap: int) -> None:
        self.dispatch(self.assigner.join(wid, role, cap))

    def leave(self, wid: str) -> None:
        returned, assignments = self.assigner.leave(wid)
        for tid in returned:
            self.manager.requeued(tid)
        self.dispatch(assignments)

    def complete(self, tid: str, wid: str) -> None:
        accepted, assignments = self.assigner.completed(tid, wid)
        if accepted:
            self.end(tid)
            before = set(self.manager.failed_tasks)  # a group ending FAILED fails dependents
            self.ready(self.manager.completed(tid, "ok", 1.0, 2.0))
            for ended in set(self.manager.failed_tasks) - before:
                self.end(ended)
        self.dispatch(assignments)

    def fail(self, tid: str, wid: str) -> None:
        outcome, assignments = self.assigner.failed(tid, wid)
        if outcome == "retry":
            self.manager.requeued(tid)
        elif outcome == "failed":
            before = set(self.manager.failed_tasks)
            self.ready(self.manager.failed(tid, "boom"))
            for ended in set(self.manager.failed_tasks) - before:
                self.end(ended)
        self.dispatch(assignments)

    def end(self, tid: str) -> None:
        self.ends[tid] = self.ends.get(tid, 0) + 1

    def check(self) -> None:
        for slot in self.assigner.workers.values():
            assert len(slot.running) <= slot.capacity
        for tid, wid in self.assigner.holder.items():
            assert self.manager.tasks[tid].status is TaskStatus.IN_PROGRESS
            assert tid in self.assigner.workers[wid].running
        assert not set(self.manager.completed_tasks) & set(self.manager.failed_tasks)
        assert all(n == 1 for n in self.ends.values()), "a task ended twice"
        for group in self.manager.task_groups.values():
            goal = group.goal
            if goal is None:
                continue
            if goal.check_condition(self.manager.task_groups, self.manager.completed_tasks):
                self.goal_seen_true.add(group.task_id)
                assert goal.status is GoalStatus.ACHIEVED, "goal not flipped when it first held"
            if goal.status is GoalStatus.ACHIEVED:
                assert group.task_id in self.goal_seen_true


def random_groups(rng: random.Random, n_groups: int) -> list[Any]:
    groups = []
    counter = 0
    for g in range(n_groups):
        tasks = []
        for _ in range(rng.randint(0, 8)):
            counter += 1
            tasks.append(task(f"t{counter}", rng.choice(ROLES)))
        ids = [t.task_id for t in tasks]
        deps = {
            ids[i]: rng.sample(ids[:i], rng.randint(0, min(2, i)))
            for i in range(len(ids))
            if i and rng.random() < 0.4
        }
        need = rng.randint(1, max(1, len(tasks)))
        goal = TaskGroupGoal(
            f"goal{g}",
            "",
            lambda groups, done, gid=f"g{g}", n=need: (
                sum(1 for t in done.values() if t.group_id == gid) >= n
            ),
        )
        group = TaskManager.create_task_group(
            f"group{g}", "", tasks, goal=goal if rng.random() < 0.7 else None,
            dependencies=deps, priority=rng.randint(1, 3),
        )  # fmt: skip
        group.task_id = f"g{g}"
        for t in tasks:
            t.group_id = group.task_id
        if groups and rng.random() < 0.3:
            group.depends_on = [rng.choice(groups).task_id]
        groups.append(group)
    return groups


@pytest.mark.parametrize("seed", range(60))
def test_random_sequences_keep_every_invariant(seed: int) -> None:
    rng = random.Random(seed)
    sim = Sim(max_retries=rng.randint(0, 2))
    sim.add(random_groups(rng, rng.randint(1, 5)))
    workers: dict[str, str] = {}
    gone: list[str] = []
    for step in range(300):
        op = rng.random()
        if op < 0.15 or not workers:
            wid = f"w{step}"
            role = rng.choice(ROLES)
            workers[wid] = role
            sim.join(wid, role, rng.randint(1, 3))
        elif op < 0.22:
            wid = rng.choice(list(workers))
            del workers[wid]
            gone.append(wid)
            sim.leave(wid)
        elif op < 0.7 and sim.assigner.holder:
            tid, wid = rng.choice(sorted(sim.assigner.holder.items()))
            sim.complete(tid, wid)
            if rng.random() < 0.2:
                sim.complete(tid, wid)  # duplicate
        elif op < 0.8 and sim.assigner.holder:
            tid, wid = rng.choice(sorted(sim.assigner.holder.items()))
            sim.fail(tid, wid)
        elif op < 0.9 and gone and sim.manager.tasks:
            sim.complete(rng.choice(sorted(sim.manager.tasks)), rng.choice(gone))  # late
        sim.check()
    for role in ROLES:  # finally everything can run: every task must end exactly once
        sim.join(f"final-{role}", role, 5)
    while sim.assigner.holder:
        tid, wid = sorted(sim.assigner.holder.items())[0]
        sim.complete(tid, wid)
        sim.check()
    assert sim.manager.all_done()
    assert set(sim.ends) == set(sim.manager.tasks)


def test_priority_order_and_requeue_first() -> None:
    sim = Sim()
    low = TaskManager.create_task_group("low", "", [task("l1", "a"), task("l2", "a")], priority=1)
    high = TaskManager.create_task_group("high", "", [task("h1", "a")], priority=5)
    sim.add([low, high])
    sim.join("w1", "a", 1)
    assert sim.assigner.holder == {"h1": "w1"}
    sim.leave("w1")
    sim.join("w2", "a", 1)
    assert sim.assigner.holder == {"h1": "w2"}  # the returned task goes first
    sim.complete("h1", "w2")
    assert sim.assigner.holder == {"l1": "w2"}


def test_a_worker_joining_mid_run_gets_work_at_once() -> None:
    sim = Sim()
    sim.add([TaskManager.create_task_group("g", "", [task(f"t{i}", "a") for i in range(5)])])
    sim.join("w1", "a", 2)
    sim.join("w2", "a", 2)
    assert len(sim.assigner.workers["w2"].running) == 2


def test_retries_then_failure_with_dependents_failing_too() -> None:
    sim = Sim(max_retries=1)
    group = TaskManager.create_task_group(
        "g", "", [task("x", "a"), task("y", "a")], dependencies={"y": ["x"]}
    )
    sim.add([group])
    sim.join("w", "a", 1)
    sim.fail("x", "w")  # retried
    assert sim.assigner.holder == {"x": "w"}
    sim.fail("x", "w")  # out of retries
    assert sim.manager.errors == {"x": "boom", "y": "dependency x failed: boom"}
    assert group.status is TaskStatus.FAILED


def test_group_dependencies_wait_and_goals_flip_while_tasks_continue() -> None:
    sim = Sim()
    goal = TaskGroupGoal("half", "", lambda groups, done: len(done) >= 1)
    first = TaskManager.create_task_group("first", "", [task("a1", "a"), task("a2", "a")],
                                          goal=goal)  # fmt: skip
    second = TaskManager.create_task_group("second", "", [task("b1", "a")],
                                           depends_on=[first.task_id])  # fmt: skip
    sim.add([first, second])
    sim.join("w", "a", 3)
    assert set(sim.assigner.holder) == {"a1", "a2"}
    sim.complete("a1", "w")
    assert goal.status is GoalStatus.ACHIEVED and first.status is TaskStatus.IN_PROGRESS
    sim.complete("a2", "w")
    assert first.status is TaskStatus.COMPLETED and set(sim.assigner.holder) == {"b1"}
    assert first.required_by == [second.task_id]


def test_create_task_group_and_bad_dependencies() -> None:
    tasks = [task("t1", "a")]
    group = TaskManager.create_task_group("g", "d", tasks)
    assert tasks[0].group_id == group.task_id
    manager = TaskManager()
    bad = TaskManager.create_task_group("g", "", [task("z", "a")], dependencies={"z": ["nope"]})
    with pytest.raises(ValueError, match="nope"):
        manager.add_groups([bad])
