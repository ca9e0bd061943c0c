"""The task plugin's journal: what it writes comes back as it was submitted."""

from __future__ import annotations

import dataclasses
import enum

from ceylon.task import TaskGroup, TaskManager, TaskMessage, TaskStatus
from ceylon.task.journal import Journal
from ceylon.task.store import MemoryTaskStore, StoredGroup
from transport import Codec


class Finish(enum.Enum):
    MATTE = "matte"
    GLOSS = "gloss"


@dataclasses.dataclass(kw_only=True)
class PaintTask(TaskMessage):
    colour: str  # required: no default
    finish: Finish = Finish.MATTE
    coats: list[int] = dataclasses.field(default_factory=list)


def definition(task: TaskMessage) -> dict[str, object]:
    """What was submitted of a task: everything but how far it got."""
    fields = dataclasses.asdict(task)
    for reset in ("status", "assigned_to", "completed", "start_time", "end_time", "result"):
        fields.pop(reset)
    return {"type": type(task), **fields}


def groups() -> list[TaskGroup]:
    plain = [TaskMessage(name=f"p{i}", duration=0.5, required_role="painter") for i in range(3)]
    paint = [
        PaintTask(name="walls", required_role="painter", colour="white", coats=[1, 2]),
        PaintTask(name="door", required_role="painter", colour="red", finish=Finish.GLOSS,
                  metadata={"room": 4}),
    ]  # fmt: skip
    first = TaskManager.create_task_group(
        "first", "the plain ones", plain, dependencies={plain[1].task_id: [plain[0].task_id]}
    )
    second = TaskManager.create_task_group("second", "", paint, depends_on=[first.task_id])
    second.priority = 3
    return [first, second]


def test_groups_come_back_as_submitted_with_how_far_their_tasks_got() -> None:
    store = MemoryTaskStore()
    journal = Journal(store)
    submitted = groups()
    first, second = submitted
    live = TaskManager()
    live.add_groups(submitted)
    for group in submitted:
        journal.group_added(group, "alice")
    p0, p1, p2 = first.subtasks
    journal.started(p0, "w1", 1)
    live.completed(p0.task_id, 42, 1.0, 2.0)
    journal.ended(p0, None, 1)
    journal.started(p1, "w2", 1)
    journal.requeued(p2, 2)

    manager = TaskManager()
    restored = Journal(store).restore(manager)
    assert restored.groups == 2 and restored.ended == 1
    assert restored.leased == {p1.task_id: "w2"}
    assert restored.attempts == {p1.task_id: 1, p2.task_id: 2}
    assert {t.task_id for t in restored.ready} == {p2.task_id}  # second waits for first
    for before in submitted:
        after = manager.task_groups[before.task_id]
        assert (after.name, after.description, after.priority, after.depends_on) == (
            before.name, before.description, before.priority, before.depends_on
        )  # fmt: skip
        assert after.dependencies == before.dependencies
        assert [definition(t) for t in after.subtasks] == [definition(t) for t in before.subtasks]
    assert manager.completed_tasks[p0.task_id].result == 42


def test_a_journal_from_before_the_compact_form_is_read() -> None:
    store = MemoryTaskStore()
    group = groups()[0]
    body = Codec().pack(dataclasses.replace(group, goal=None))  # the group encoded whole
    store.add_group(StoredGroup(group.task_id, body, "pending"))
    manager = TaskManager()
    restored = Journal(store).restore(manager)
    assert restored.groups == 1
    assert [t.name for t in manager.task_groups[group.task_id].subtasks] == ["p0", "p1", "p2"]


def test_a_journal_with_a_pair_per_task_is_read() -> None:
    store = MemoryTaskStore()
    group = groups()[0]
    header = dataclasses.replace(group, goal=None, subtasks=[])
    codec = Codec()
    codec.registry.register(TaskMessage)
    tag = codec.registry.spec_of_type(TaskMessage).tag  # type: ignore[union-attr]
    pairs = [[tag, {"task_id": t.task_id, "name": t.name}] for t in group.subtasks]
    store.add_group(StoredGroup(group.task_id, codec.pack({"group": header, "tasks": pairs}), ""))
    manager = TaskManager()
    assert Journal(store).restore(manager).groups == 1
    subtasks = manager.task_groups[group.task_id].subtasks
    assert [(t.task_id, t.name) for t in subtasks] == [(t.task_id, t.name) for t in group.subtasks]


def test_a_task_type_this_process_does_not_know_leaves_its_group_out() -> None:
    store = MemoryTaskStore()
    good, paint = groups()
    journal = Journal(store)
    journal.group_added(good, "")
    journal.group_added(paint, "")
    # as if written by a process where the tasks' type had another name
    stored = store.load().groups[1]
    assert stored.body.count(b"PaintTask") == 2
    stored.body = stored.body.replace(b"PaintTask", b"PaintTusk")
    manager = TaskManager()
    restored = Journal(store).restore(manager)
    assert restored.groups == 1 and list(manager.task_groups) == [good.task_id]
    assert manager.tasks[good.subtasks[0].task_id].status is TaskStatus.PENDING
