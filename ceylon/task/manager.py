"""Task groups, dependencies and goals, sans-I/O: events in, newly runnable tasks out.

A task becomes *ready* when its group may start (every group it ``depends_on`` has
completed) and every task it depends on (``TaskGroup.dependencies``) has completed. A
task ends exactly once: COMPLETED, or FAILED (its own error, or a dependency that
failed). A group is IN_PROGRESS from its first started task, COMPLETED when all its
tasks completed, FAILED when all ended and one failed. A goal is checked as completions
arrive and flips to ACHIEVED the first time its condition holds, while the other tasks
carry on; if the group ends without that, the goal is FAILED.

A group *settles* when it and every group that depends on it have ended. Settled groups
can be forgotten (`forget_finished`): by count (keep the newest so many) or by age (since
they settled), so that a long-running playground does not hold every task it was ever
given. Time comes in as an argument (``now``); the manager never reads a clock.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any, Final

from .data import GoalStatus, TaskGroup, TaskGroupGoal, TaskMessage, TaskStatus

__all__ = ["TaskManager"]

#: tables are rebuilt (so that they shrink) once more tasks were forgotten since the last
#: rebuild than are held, and at least this many
_COMPACT_AFTER: Final = 1024


@dataclasses.dataclass
class _GroupState:
    waiting_on: set[str]  # groups that must complete first
    open_tasks: int
    task_ids: tuple[str, ...]  # its tasks, as added (what forgetting it removes)
    failed: bool = False
    started: bool = False
    ended_at: float | None = None  # when it ended, as stamped (`stamp_ended`)
    settled_at: float | None = None  # the latest end of it and the groups that need it


class TaskManager:
    """Tracks every group and task the playground was given."""

    def __init__(self) -> None:
        #: every group not forgotten, by its ``task_id``; the objects given, updated in place
        self.task_groups: dict[str, TaskGroup] = {}
        #: every task not forgotten, by ``task_id``
        self.tasks: dict[str, TaskMessage] = {}
        self.completed_tasks: dict[str, TaskMessage] = {}
        self.failed_tasks: dict[str, TaskMessage] = {}
        self.errors: dict[str, str] = {}
        self._groups: dict[str, _GroupState] = {}
        self._group_of: dict[str, str] = {}
        self._blocked_by: dict[str, set[str]] = {}  # task -> unfinished tasks it needs
        self._dependents: dict[str, list[str]] = {}  # task -> tasks that need it
        self._released: set[str] = set()  # tasks handed out as ready
        self._ended: dict[str, None] = {}  # groups that ended and are held, in end order
        self._unstamped: list[str] = []  # groups that ended since the last `stamp_ended`
        #: how many groups `forget` removed so far
        self.groups_forgotten = 0
        self._forgotten_tasks = 0  # since the tables were last rebuilt
        #: when a list (the plugin sets one and empties it), what ended, in order:
        #: ("task", task_id) for each task that completed or failed, by a report or
        #: because something it needs failed, and ("group", group id) for each group
        self.journal: list[tuple[str, str]] | None = None

    @staticmethod
    def create_task_group(
        name: str,
        description: str,
        subtasks: list[TaskMessage],
        goal: TaskGroupGoal | None = None,
        dependencies: dict[str, list[str]] | None = None,
        depends_on: list[str] | None = None,
        priority: int = 1,
    ) -> TaskGroup:
        """A new group with a fresh ``task_id``; each subtask's ``group_id`` is set to it."""
        group = TaskGroup(
            name=name,
            description=description,
            subtasks=list(subtasks),
            goal=goal,
            dependencies=dict(dependencies or {}),
            depends_on=list(depends_on or []),
            priority=priority,
        )
        for task in group.subtasks:
            task.group_id = group.task_id
        return group

    # -- adding -----------------------------------------------------------------------

    def add_groups(self, groups: Iterable[TaskGroup]) -> list[TaskMessage]:
        """Take groups in; return the tasks that may run now.

        The groups are checked first, all together, and nothing is added unless all pass
        (see `validate`). What a task or group arrives with that only the run should set
        is then reset: every task's ``status``, ``assigned_to``, ``completed``, ``result``,
        ``start_time`` and ``end_time``, each group's ``status`` and ``required_by`` and
        its goal's ``status``. A group that ``depends_on`` a group that already failed
        fails at once.

        Raises:
            ValueError: why the groups cannot run, in one line (see `validate`).
        """
        groups = list(groups)
        self.validate(groups)
        for group in groups:
            _reset(group)
        for group in groups:
            self.task_groups[group.task_id] = group
            for task in group.subtasks:
                task.group_id = group.task_id
                self.tasks[task.task_id] = task
                self._group_of[task.task_id] = group.task_id
            waiting = {g for g in group.depends_on if not self._group_done(g)}
            task_ids = tuple(t.task_id for t in group.subtasks)
            self._groups[group.task_id] = _GroupState(waiting, len(task_ids), task_ids)
            for other in group.depends_on:
                upstream = self.task_groups.get(other)
                if upstream is not None and group.task_id not in upstream.required_by:
                    upstream.required_by.append(group.task_id)
            for task in group.subtasks:
                needs = set(group.dependencies.get(task.task_id, ()))
                self._blocked_by[task.task_id] = {t for t in needs if t not in self.completed_tasks}
                for need in needs:
                    self._dependents.setdefault(need, []).append(task.task_id)
        ready: list[TaskMessage] = []
        for group in groups:
            for other in group.depends_on:  # an upstream that failed before this came
                upstream = self.task_groups[other]
                if upstream.status is TaskStatus.FAILED:
                    for task in group.subtasks:
                        self._fail(task.task_id, f"group {upstream.name!r} failed", ready)
        for group in groups:
            if not group.subtasks:
                self._finish_group(group.task_id, ready)
        for group in groups:
            ready += self._release(group.task_id)
        return ready

    def validate(self, groups: Iterable[TaskGroup]) -> None:
        """Check that `groups` can be added, and so can end; changes nothing.

        Refused: a group id or task id already known or repeated; a dependency (of a task
        in ``dependencies``, or of a group in ``depends_on``) on an id that is neither in
        the task's group (for tasks) nor added before or alongside (for groups); a task or
        group that depends on itself; a dependency cycle, which is named.

        Raises:
            ValueError: the first reason found, in one line.
        """
        groups = list(groups)
        batch: dict[str, TaskGroup] = {}
        seen_tasks: set[str] = set()
        for group in groups:
            if group.task_id in self.task_groups or group.task_id in batch:
                raise ValueError(f"task group {group.task_id!r} was already added")
            batch[group.task_id] = group
            for task in group.subtasks:
                if task.task_id in self.tasks or task.task_id in seen_tasks:
                    raise ValueError(f"task group {group.name!r} repeats task_id {task.task_id!r}")
                seen_tasks.add(task.task_id)
            _check_tasks(group)
        for group in groups:
            for other in group.depends_on:
                if other == group.task_id:
                    raise ValueError(f"task group {group.name!r} depends on itself")
                if other not in batch and other not in self.task_groups:
                    raise ValueError(
                        f"task group {group.name!r} depends on group {other!r}, which is unknown"
                    )
        # Groups added before cannot depend on these (their upstream was known when they
        # came), so a cycle of groups lies within the batch.
        edges = {gid: [o for o in g.depends_on if o in batch] for gid, g in batch.items()}
        cycle = _find_cycle(edges)
        if cycle is not None:
            names = " -> ".join(repr(batch[g].name or g) for g in cycle)
            raise ValueError(f"task groups depend on each other in a cycle: {names}")

    def _group_done(self, group_id: str) -> bool:
        group = self.task_groups.get(group_id)
        return group is not None and group.status is TaskStatus.COMPLETED

    def _release(self, group_id: str) -> list[TaskMessage]:
        """Every task of a group that may start now (the group's upstream is done)."""
        if self._groups[group_id].waiting_on:
            return []
        return [t for t in self.task_groups[group_id].subtasks if self._releasable(t.task_id)]

    def _releasable(self, task_id: str) -> bool:
        task = self.tasks[task_id]
        if (
            task_id in self._released
            or self._blocked_by.get(task_id)
            or task.status is not TaskStatus.PENDING
            or self._groups[self._group_of[task_id]].waiting_on
        ):
            return False
        self._released.add(task_id)
        return True

    # -- events -----------------------------------------------------------------------

    def started(self, task_id: str, worker: str) -> None:
        """A task was handed to `worker`."""
        task = self.tasks[task_id]
        task.status = TaskStatus.IN_PROGRESS
        task.assigned_to = worker
        state = self._groups[self._group_of[task_id]]
        if not state.started:
            state.started = True
            group = self.task_groups[self._group_of[task_id]]
            group.status = TaskStatus.IN_PROGRESS
            if group.goal is not None and group.goal.status is GoalStatus.NOT_STARTED:
                group.goal.status = GoalStatus.IN_PROGRESS

    def requeued(self, task_id: str) -> None:
        """A task goes back to waiting (its worker left, or it is retried)."""
        task = self.tasks[task_id]
        task.status = TaskStatus.PENDING
        task.assigned_to = None

    def completed(
        self,
        task_id: str,
        result: Any = None,
        start_time: float | None = None,
        end_time: float | None = None,
    ) -> list[TaskMessage]:
        """A task completed; return the tasks that may run now.

        Raises:
            KeyError: unknown task. A task that already ended is left as it was.
        """
        task = self.tasks[task_id]
        if task.status in (TaskStatus.COMPLETED, TaskStatus.FAILED):
            return []
        task.status = TaskStatus.COMPLETED
        task.completed = True
        task.result = result
        task.start_time = start_time
        task.end_time = end_time
        self.completed_tasks[task_id] = task
        if self.journal is not None:
            self.journal.append(("task", task_id))
        ready: list[TaskMessage] = []
        for dependent in self._dependents.get(task_id, ()):
            blocked = self._blocked_by.get(dependent)
            if blocked is not None:
                blocked.discard(task_id)
                if not blocked and self._releasable(dependent):
                    ready.append(self.tasks[dependent])
        group_id = self._group_of[task_id]
        self._check_goal(self.task_groups[group_id])
        self._task_ended(group_id, ready)
        return ready

    def failed(self, task_id: str, error: str) -> list[TaskMessage]:
        """A task failed for good; whatever needs it fails too. Returns newly ready tasks.

        Raises:
            KeyError: unknown task.
        """
        ready: list[TaskMessage] = []
        self._fail(task_id, error, ready)
        return ready

    def _fail(self, task_id: str, error: str, ready: list[TaskMessage]) -> None:
        task = self.tasks[task_id]
        if task.status in (TaskStatus.COMPLETED, TaskStatus.FAILED):
            return
        task.status = TaskStatus.FAILED
        self.failed_tasks[task_id] = task
        self.errors[task_id] = error
        if self.journal is not None:
            self.journal.append(("task", task_id))
        group_id = self._group_of[task_id]
        self._groups[group_id].failed = True
        self._task_ended(group_id, ready)
        for dependent in self._dependents.get(task_id, ()):
            self._fail(dependent, f"dependency {task_id} failed: {error}", ready)

    def _task_ended(self, group_id: str, ready: list[TaskMessage]) -> None:
        state = self._groups[group_id]
        state.open_tasks -= 1
        if state.open_tasks == 0:
            self._finish_group(group_id, ready)

    def _finish_group(self, group_id: str, ready: list[TaskMessage]) -> None:
        state = self._groups[group_id]
        group = self.task_groups[group_id]
        group.status = TaskStatus.FAILED if state.failed else TaskStatus.COMPLETED
        self._ended[group_id] = None
        self._unstamped.append(group_id)
        if self.journal is not None:
            self.journal.append(("group", group_id))
        goal = group.goal
        if goal is not None and goal.status is not GoalStatus.ACHIEVED:
            self._check_goal(group)
            if not _achieved(goal):  # (a function: mypy would keep `status` narrowed)
                goal.status = GoalStatus.FAILED
        for other_id, other in self._groups.items():
            if group_id in other.waiting_on:
                if group.status is TaskStatus.COMPLETED:
                    other.waiting_on.discard(group_id)
                    ready += self._release(other_id)
                else:
                    for task in self.task_groups[other_id].subtasks:
                        self._fail(task.task_id, f"group {group.name!r} failed", ready)

    def _check_goal(self, group: TaskGroup) -> None:
        goal = group.goal
        if goal is None or goal.status in (GoalStatus.ACHIEVED, GoalStatus.FAILED):
            return
        if goal.check_condition(self.task_groups, self.completed_tasks):
            goal.status = GoalStatus.ACHIEVED

    # -- forgetting -------------------------------------------------------------------

    def stamp_ended(self, now: float) -> None:
        """Record `now` as the end time of every group that ended since the last call.

        Call it soon after events (the plugin does, after each); `forget_finished` calls it
        first too, so a group never stamped counts as ending at that call.
        """
        for group_id in self._unstamped:
            state = self._groups.get(group_id)
            if state is None or state.ended_at is not None:
                continue
            state.ended_at = now
            state.settled_at = _later(state.settled_at, now)
            for upstream in self.task_groups[group_id].depends_on:
                other = self._groups.get(upstream)
                if other is not None:
                    other.settled_at = _later(other.settled_at, now)
        self._unstamped.clear()

    @property
    def ended_held(self) -> int:
        """Groups that ended (COMPLETED or FAILED) and are not forgotten yet."""
        return len(self._ended)

    def finished_to_forget(
        self, now: float, keep: int | None = None, older_than: float | None = None
    ) -> list[str]:
        """The settled groups that `forget_finished` would forget now, oldest first.

        A group is a candidate once it settled: it ended and so did every group that
        ``depends_on`` it (and nothing still to be reported in `journal` names it). Of the
        candidates, those settled at least `older_than` seconds before `now` go, and then
        the oldest ones beyond the newest `keep`. None: no limit of that kind.
        """
        self.stamp_ended(now)
        if keep is None and older_than is None:
            return []
        pending = self._journal_groups()
        candidates: list[tuple[float, int, str]] = []
        for order, group_id in enumerate(self._ended):
            state = self._groups[group_id]
            if group_id in pending or state.settled_at is None:
                continue
            needed_by = self.task_groups[group_id].required_by
            if all(other in self._ended or other not in self._groups for other in needed_by):
                candidates.append((state.settled_at, order, group_id))
        candidates.sort()
        cut = 0
        if older_than is not None:
            while cut < len(candidates) and now - candidates[cut][0] >= older_than:
                cut += 1
        if keep is not None:
            cut = max(cut, len(candidates) - keep)
        return [group_id for _, _, group_id in candidates[:cut]]

    def forget_finished(
        self, now: float, keep: int | None = None, older_than: float | None = None
    ) -> list[str]:
        """Forget the settled groups past `keep` (count) or `older_than` (seconds).

        See `finished_to_forget` for which; each goes as `forget` does.

        Returns:
            The ids of the groups forgotten, oldest first.
        """
        doomed = self.finished_to_forget(now, keep, older_than)
        for group_id in doomed:
            self.forget(group_id)
        return doomed

    def forget(self, group_id: str) -> list[str]:
        """Remove a group that ended, and its tasks, from every record of this manager.

        Its tasks leave `tasks`, `completed_tasks`, `failed_tasks` and `errors`; a group
        added later may no longer name it in ``depends_on``. The group objects themselves
        are left as they were.

        Returns:
            The ids of its tasks.

        Raises:
            KeyError: unknown group.
            ValueError: the group has not ended.
        """
        state = self._groups[group_id]
        if group_id not in self._ended:
            raise ValueError(f"task group {group_id!r} has not ended")
        del self._groups[group_id]
        del self._ended[group_id]
        del self.task_groups[group_id]
        for task_id in state.task_ids:
            self.tasks.pop(task_id, None)
            self.completed_tasks.pop(task_id, None)
            self.failed_tasks.pop(task_id, None)
            self.errors.pop(task_id, None)
            self._group_of.pop(task_id, None)
            self._blocked_by.pop(task_id, None)
            self._dependents.pop(task_id, None)
            self._released.discard(task_id)
        self.groups_forgotten += 1
        self._forgotten_tasks += len(state.task_ids)
        if self._forgotten_tasks >= max(_COMPACT_AFTER, len(self.tasks)):
            self._compact()
        return list(state.task_ids)

    def _compact(self) -> None:
        """Rebuild every table in place: a dict or set keeps its size when emptied."""
        self._forgotten_tasks = 0
        for table in (
            self.task_groups,
            self.tasks,
            self.completed_tasks,
            self.failed_tasks,
            self.errors,
            self._groups,
            self._group_of,
            self._blocked_by,
            self._dependents,
            self._ended,
        ):
            compact(table)
        compact(self._released)

    def _journal_groups(self) -> set[str]:
        """Groups that `journal` still names (their end is not reported yet)."""
        if not self.journal:
            return set()
        named = set()
        for kind, ident in self.journal:
            group_id = ident if kind == "group" else self._group_of.get(ident)
            if group_id is not None:
                named.add(group_id)
        return named

    # -- questions --------------------------------------------------------------------

    def group_of(self, task_id: str) -> TaskGroup:
        return self.task_groups[self._group_of[task_id]]

    @property
    def unfinished(self) -> int:
        """Tasks that have not ended yet."""
        return len(self.tasks) - len(self.completed_tasks) - len(self.failed_tasks)

    def all_done(self) -> bool:
        return self.unfinished == 0


def compact(table: dict[Any, Any] | set[Any]) -> None:
    """Shrink `table` to what it holds, keeping its identity (and a dict's order)."""
    if isinstance(table, dict):
        items = list(table.items())
        table.clear()
        table.update(items)
    else:
        members = list(table)
        table.clear()
        table.update(members)


def _later(when: float | None, now: float) -> float:
    return now if when is None else max(when, now)


def _achieved(goal: TaskGroupGoal) -> bool:
    return goal.status is GoalStatus.ACHIEVED


def _check_tasks(group: TaskGroup) -> None:
    ids = {t.task_id for t in group.subtasks}
    for task_id, needs in group.dependencies.items():
        if task_id not in ids:
            raise ValueError(
                f"task group {group.name!r}: dependencies given for {task_id!r}, "
                "not one of its tasks"
            )
        for need in needs:
            if need == task_id:
                raise ValueError(f"task group {group.name!r}: task {task_id!r} depends on itself")
            if need not in ids:
                raise ValueError(
                    f"task group {group.name!r}: dependency on {need!r}, not one of its tasks"
                )
    cycle = _find_cycle({t: list(n) for t, n in group.dependencies.items()})
    if cycle is not None:
        raise ValueError(
            f"task group {group.name!r}: dependency cycle " + " -> ".join(map(repr, cycle))
        )


def _find_cycle(edges: dict[str, list[str]]) -> list[str] | None:
    """A cycle of `edges` (node -> the nodes it needs), its first node repeated at the end."""
    done: set[str] = set()
    for root in edges:
        if root in done:
            continue
        path = [root]
        on_path = {root}
        stack = [iter(edges.get(root, ()))]
        while stack:  # depth first, without recursion: a long chain must not overflow
            nxt = next(stack[-1], None)
            if nxt is None:
                stack.pop()
                node = path.pop()
                on_path.discard(node)
                done.add(node)
            elif nxt in on_path:
                return [*path[path.index(nxt) :], nxt]
            elif nxt not in done:
                path.append(nxt)
                on_path.add(nxt)
                stack.append(iter(edges.get(nxt, ())))
    return None


def _reset(group: TaskGroup) -> None:
    """Clear what only a run sets (a group may come with anything in those fields)."""
    group.status = TaskStatus.PENDING
    group.required_by = []
    if group.goal is not None:
        group.goal.status = GoalStatus.NOT_STARTED
    for task in group.subtasks:
        task.status = TaskStatus.PENDING
        task.assigned_to = None
        task.completed = False
        task.result = None
        task.start_time = None
        task.end_time = None
