"""The task plugin's side of its `TaskStore`: what to write as state changes, and how to
take the state back when a playground starts on an existing journal.

Groups are stored as submitted (encoded with the codec; a goal's ``check_condition`` is
code, so a group's goal is not stored, only its status); tasks as rows that follow each
hand-out, requeue and outcome. Restoring replays that into a fresh `TaskManager`: ended
tasks stay ended with their results, tasks that were handed out are *leased* to the
worker that had them (it may come back and say so, or deliver the outcome), the rest
are ready again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import os
from collections.abc import Iterator
from typing import Any

from loguru import logger

from transport import Codec, DecodeError, EncodeError, TypeSpec

from .data import TaskGroup, TaskMessage, TaskStatus
from .manager import TaskManager
from .sqlitestore import SqliteTaskStore
from .store import MemoryTaskStore, StoredGroup, StoredTask, TaskStore

__all__ = ["DEFAULT_STATE", "Journal", "NoJournal", "Restored", "open_store"]

_PENDING = TaskStatus.PENDING.value
_IN_PROGRESS = TaskStatus.IN_PROGRESS.value

#: Where ``ceylon playground --plugin tasks`` journals unless told otherwise.
DEFAULT_STATE = ".ceylon/tasks.db"


def open_store(state: str | os.PathLike[str] | None) -> TaskStore:
    """The store for `state`: a SQLite file, or in memory for None or ``":memory:"``.

    Called in the event loop that will use it (its callbacks come back to that loop).

    Raises:
        StoreError: the file cannot be opened as a task journal.
    """
    if state is None or str(state) == ":memory:":
        return MemoryTaskStore()
    loop = asyncio.get_running_loop()
    return SqliteTaskStore(state, call_soon=loop.call_soon_threadsafe)


@dataclasses.dataclass
class Restored:
    """What a journal gave back: tasks ready to run, and those leased to their workers."""

    groups: int = 0
    ready: list[TaskMessage] = dataclasses.field(default_factory=list)
    leased: dict[str, str] = dataclasses.field(default_factory=dict)  # task id -> worker
    ended: int = 0
    #: task id -> how many times it was handed out (so retry limits count on)
    attempts: dict[str, int] = dataclasses.field(default_factory=dict)


class Journal:
    """Writes the plugin's state changes to `store` (encoded with `codec`)."""

    def __init__(self, store: TaskStore, codec: Codec | None = None) -> None:
        self.store = store
        self.codec = codec or Codec()
        self._log = logger.bind(agent="tasks")
        self._kept: dict[
            type, tuple[TypeSpec, dict[str, Any]]
        ] = {}  # task type -> its spec, defaults

    def group_added(self, group: TaskGroup, submitter: str) -> None:
        try:
            body = self._pack_group(group)
        except EncodeError as exc:
            self._log.error("group {} cannot be journaled: {}", group.task_id, exc)
            return
        status = group.goal.status.value if group.goal is not None else ""
        self.store.add_group(
            StoredGroup(group.task_id, body, group.status.value, submitter, status)
        )

    def started(self, task: TaskMessage, worker: str, attempts: int) -> None:
        self.store.put_task(
            StoredTask(task.task_id, task.group_id or "", _IN_PROGRESS, worker, attempts)
        )

    def requeued(self, task: TaskMessage, attempts: int) -> None:
        self.store.put_task(StoredTask(task.task_id, task.group_id or "", _PENDING, "", attempts))

    def ended(self, task: TaskMessage, error: str | None, attempts: int) -> None:
        try:
            result = None if task.result is None else self.codec.pack(task.result)
        except EncodeError as exc:
            result, error = None, error or f"the result cannot be journaled: {exc}"
        self.store.put_task(
            StoredTask(
                task.task_id,
                task.group_id or "",
                task.status.value,
                task.assigned_to or "",
                attempts,
                result,
                error,
                task.start_time,
                task.end_time,
            )
        )

    def group_ended(self, group: TaskGroup) -> None:
        goal = group.goal.status.value if group.goal is not None else ""
        self.store.group_ended(group.task_id, group.status.value, goal)

    def forget(self, group_ids: list[str]) -> None:
        if group_ids:
            self.store.forget_groups(group_ids)

    def restore(self, manager: TaskManager) -> Restored:
        """Put the journaled state into `manager` (a fresh one, journaling nothing yet)."""
        # What is made here is the manager's state from now on: a collection meanwhile
        # would free nothing (as when a group is packed).
        with _collector_paused():
            return self._restore(manager)

    def _restore(self, manager: TaskManager) -> Restored:
        state = self.store.load()
        restored = Restored()
        groups: list[TaskGroup] = []
        for stored in state.groups:
            try:
                group = self._unpack_group(stored.body)
            except (DecodeError, TypeError, ValueError) as exc:
                self._log.error("journaled group {} cannot be read: {}", stored.group_id, exc)
                continue
            groups.append(group)
        ready = {t.task_id: t for t in manager.add_groups(groups)}
        restored.groups = len(groups)
        for row in state.tasks.values():
            if row.task_id not in manager.tasks:
                continue
            if row.status in (TaskStatus.COMPLETED.value, TaskStatus.FAILED.value):
                restored.ended += 1
                newly = self._replay_end(manager, row)
                ready.update((t.task_id, t) for t in newly)
            elif row.attempts:
                restored.attempts[row.task_id] = row.attempts
        for row in state.tasks.values():
            if row.task_id in manager.tasks and row.status == TaskStatus.IN_PROGRESS.value:
                manager.started(row.task_id, row.worker)
                restored.leased[row.task_id] = row.worker
        restored.ready = [
            task
            for task_id, task in ready.items()
            if task_id not in restored.leased
            and manager.tasks[task_id].status is TaskStatus.PENDING
        ]
        return restored

    # A group is kept as its header and, for each task, its type's tag and the fields
    # that differ from their defaults (what was submitted: statuses and results are
    # reset on submission). Half the bytes of the group encoded whole, and a third of
    # the time to read back, which is most of a restart. Tags and fields alternate in
    # one flat list: a list per task would be a container per task for the garbage
    # collector to track. The collector is paused meanwhile: every object made here
    # lives until the group is packed, so a collection would free nothing (for a
    # 100,000-task group, collections cost as much as the packing).

    def _pack_group(self, group: TaskGroup) -> bytes:
        with _collector_paused():
            return self._pack_tasks(group)

    def _pack_tasks(self, group: TaskGroup) -> bytes:
        flat: list[Any] = []
        for task in group.subtasks:
            cls = type(task)
            kept = self._kept.get(cls)
            if kept is None:
                registry = self.codec.registry
                registry.register(cls)
                spec = registry.spec_of_type(cls)
                assert spec is not None
                kept = self._kept[cls] = (spec, _defaults(cls))
            spec, defaults = kept
            fields = spec.fields_of(task)
            flat.append(spec.tag)
            flat.append({k: v for k, v in fields.items() if k not in defaults or defaults[k] != v})
        header = dataclasses.replace(group, goal=None, subtasks=[])
        return self.codec.pack({"group": header, "flat": flat})

    def _unpack_group(self, body: bytes) -> TaskGroup:
        """Raises: DecodeError, TypeError or ValueError: not a group this process knows."""
        value = self.codec.unpack(body)
        if isinstance(value, TaskGroup):  # as journals before the compact form kept it
            return value
        if not isinstance(value, dict) or not isinstance(value.get("group"), TaskGroup):
            raise ValueError("not a journaled task group")
        group: TaskGroup = value["group"]
        if "flat" in value:
            tags = iter(value["flat"])
            pairs: Any = zip(tags, tags, strict=True)
        else:  # a pair per task, as journals before the flat form kept them
            pairs = value["tasks"]
        for tag, fields in pairs:
            spec = self.codec.registry.resolve(tag)
            if spec is None or not issubclass(spec.cls, TaskMessage):
                raise ValueError(f"task type {tag} is not registered here (--import its module)")
            group.subtasks.append(spec.build(fields))
        return group

    def _replay_end(self, manager: TaskManager, row: StoredTask) -> list[TaskMessage]:
        task = manager.tasks[row.task_id]
        task.assigned_to = row.worker or None
        if row.status == TaskStatus.FAILED.value:
            return manager.failed(row.task_id, row.error or "failed")
        result: Any = None
        if row.result is not None:
            try:
                result = self.codec.unpack(row.result)
            except DecodeError as exc:
                self._log.error("journaled result of {} cannot be read: {}", row.task_id, exc)
        return manager.completed(row.task_id, result, row.start_time, row.end_time)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No automatic garbage collection in this block (as it was after it)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _defaults(cls: type) -> dict[str, Any]:
    """The default value of each field of dataclass `cls` that has one."""
    defaults: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if field.default is not dataclasses.MISSING:
            defaults[field.name] = field.default
        elif field.default_factory is not dataclasses.MISSING:
            defaults[field.name] = field.default_factory()
    return defaults


class NoJournal(Journal):
    """What a plugin without a store uses: nothing is written, nothing to restore."""

    def __init__(self) -> None:
        super().__init__(MemoryTaskStore())

    def group_added(self, group: TaskGroup, submitter: str) -> None:
        return None

    def started(self, task: TaskMessage, worker: str, attempts: int) -> None:
        return None

    def requeued(self, task: TaskMessage, attempts: int) -> None:
        return None

    def ended(self, task: TaskMessage, error: str | None, attempts: int) -> None:
        return None

    def group_ended(self, group: TaskGroup) -> None:
        return None

    def forget(self, group_ids: list[str]) -> None:
        return None
