"""The task processor's data: tasks, groups, goals and the messages about them.

Import path and field names are those of the original framework's tutorial
(``from ceylon.task.data import TaskMessage, TaskGroup, TaskGroupGoal, GoalStatus,
TaskStatus``). `TaskMessage` is keyword-only, so a tutorial-style subclass such as
``CustomTask(TaskMessage)`` may add required fields of its own.
"""

from __future__ import annotations

import dataclasses
import enum
import uuid
from collections.abc import Callable
from typing import Any

from transport import default_registry

__all__ = [
    "GoalStatus",
    "GroupAccepted",
    "GroupDone",
    "SubmitGroup",
    "TaskGroup",
    "TaskGroupGoal",
    "TaskMessage",
    "TaskRequest",
    "TaskStatus",
    "TaskStatusUpdate",
]


class TaskStatus(enum.Enum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"


class GoalStatus(enum.Enum):
    NOT_STARTED = "not_started"
    IN_PROGRESS = "in_progress"
    ACHIEVED = "achieved"
    FAILED = "failed"


def _new_id() -> str:
    return str(uuid.uuid4())


@dataclasses.dataclass(kw_only=True)
class TaskMessage:
    """One unit of work, sent to a worker whose role is `required_role`."""

    task_id: str = dataclasses.field(default_factory=_new_id)
    name: str = ""
    description: str = ""
    duration: float = 0.0
    required_role: str = ""
    parent_id: str | None = None
    group_id: str | None = None
    subtask_ids: set[str] = dataclasses.field(default_factory=set)
    assigned_to: str | None = None
    completed: bool = False
    start_time: float | None = None
    end_time: float | None = None
    max_concurrent: int = 3
    status: TaskStatus = TaskStatus.PENDING
    metadata: dict[str, Any] | None = None
    result: Any = None
    #: seconds the task may run before it is cancelled and counts as failed (then
    #: retried by the playground's retry rules); None: the group's or the playground's
    #: default, if any
    timeout: float | None = None


#: Decides whether a group's goal is met: (task groups by task_id, completed tasks by task_id).
GoalCheck = Callable[[dict[str, "TaskGroup"], dict[str, TaskMessage]], bool]


@dataclasses.dataclass
class TaskGroupGoal:
    """A condition over the completed tasks; the group's goal is ACHIEVED when it first holds.

    It lives in the playground (it holds a function), never on the wire.
    """

    name: str
    description: str
    check_condition: GoalCheck
    success_message: str = ""
    failure_message: str = ""
    status: GoalStatus = GoalStatus.NOT_STARTED


@dataclasses.dataclass(kw_only=True)
class TaskGroup:
    """Tasks that belong together, with a goal, dependencies and a priority.

    Attributes:
        dependencies: task_id -> the task_ids (of this group) it must wait for.
        depends_on: task_ids of the groups that must complete before this one starts.
        required_by: task_ids of the groups waiting for this one (filled in for you).
        priority: higher first.
    """

    task_id: str = dataclasses.field(default_factory=_new_id)
    name: str = ""
    description: str = ""
    subtasks: list[TaskMessage] = dataclasses.field(default_factory=list)
    goal: TaskGroupGoal | None = None
    id: str = dataclasses.field(default_factory=_new_id)
    dependencies: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    depends_on: list[str] = dataclasses.field(default_factory=list)
    required_by: list[str] = dataclasses.field(default_factory=list)
    status: TaskStatus = TaskStatus.PENDING
    priority: int = 1
    #: the `TaskMessage.timeout` of its tasks that set none
    task_timeout: float | None = None


@dataclasses.dataclass
class TaskRequest:
    """A worker asking for work: a name of the original API, kept for code that uses it.

    The shipped playground and worker do not need it: a worker declares its capacity when
    it joins (``max_concurrent_tasks`` in its extra data) and is handed work as it frees
    slots.
    """

    worker_id: str
    role: str
    capacity: int


@dataclasses.dataclass
class TaskStatusUpdate:
    """A worker reports on a task: started, completed (with its result) or failed."""

    task_id: str
    status: TaskStatus
    worker: str = ""
    result: Any = None
    error: str | None = None
    start_time: float | None = None
    end_time: float | None = None


@dataclasses.dataclass
class SubmitGroup:
    """Ask a playground hosting the task plugin to run a group (no goal: it stays with you).

    Sent with `ask()`, it is answered by a `GroupAccepted` (or a `RemoteHandlerError` if
    the playground cannot decode it); then the playground forwards every `TaskStatusUpdate` of the
    group's tasks and finally a `GroupDone`.
    """

    request: int
    name: str
    description: str
    tasks: list[TaskMessage]
    dependencies: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    depends_on: list[str] = dataclasses.field(default_factory=list)
    priority: int = 1
    group_id: str = ""
    task_timeout: float | None = None


@dataclasses.dataclass
class GroupAccepted:
    request: int
    group_id: str
    error: str | None = None


@dataclasses.dataclass
class GroupDone:
    group_id: str
    status: TaskStatus


@dataclasses.dataclass
class ResultsRecorded:
    """The playground recorded the outcomes of these tasks (durably, when it journals):
    the worker that reported them may forget them."""

    task_ids: list[str]


@dataclasses.dataclass
class WorkerState:
    """What a worker holds, said after each reconnect (before it reports again): the
    tasks it runs or has queued, and those whose outcome it reports again. A task a
    resumed playground keeps for it that is in neither list never reached it: it goes
    to a worker again at once, not after the lease."""

    running: list[str]
    finished: list[str]


@dataclasses.dataclass
class HoldQuery:
    """The playground asks a worker what it holds (answered by a `WorkerState`), after
    messages between them may have been lost: a task given before the question that
    the worker does not hold never reached it."""


@dataclasses.dataclass
class GroupQuery:
    """Ask the task plugin about its groups (answered by a `GroupReport`): all of them, or
    those of one id or name; with `tasks`, every task of the matching groups; with
    `watch`, the asker hears of their tasks and ends from now on, as the submitter does
    (what a submitter that reconnected asks)."""

    request: int
    group_id: str = ""
    name: str = ""
    tasks: bool = False
    watch: bool = False


@dataclasses.dataclass
class GroupSummary:
    group_id: str
    name: str
    status: TaskStatus
    total: int
    completed: int
    failed: int


@dataclasses.dataclass
class GroupReport:
    request: int
    groups: list[GroupSummary]
    tasks: list[TaskStatusUpdate] = dataclasses.field(default_factory=list)
    names: dict[str, str] = dataclasses.field(default_factory=dict)  # task id -> name
    error: str | None = None


@dataclasses.dataclass
class CancelGroup:
    """Ask the task plugin to cancel a group: its unfinished tasks fail ("cancelled"), and
    what depends on them with them. Answered by a `GroupReport` of the group."""

    request: int
    group_id: str


_TAGS: list[tuple[type, str]] = [
    (TaskStatus, "ceylon.task.TaskStatus"),
    (GoalStatus, "ceylon.task.GoalStatus"),
    (TaskMessage, "ceylon.task.TaskMessage"),
    (TaskRequest, "ceylon.task.TaskRequest"),
    (TaskStatusUpdate, "ceylon.task.TaskStatusUpdate"),
    (SubmitGroup, "ceylon.task.SubmitGroup"),
    (GroupAccepted, "ceylon.task.GroupAccepted"),
    (GroupDone, "ceylon.task.GroupDone"),
    (ResultsRecorded, "ceylon.task.ResultsRecorded"),
    (WorkerState, "ceylon.task.WorkerState"),
    (HoldQuery, "ceylon.task.HoldQuery"),
    (TaskGroup, "ceylon.task.TaskGroup"),
    (GroupQuery, "ceylon.task.GroupQuery"),
    (GroupSummary, "ceylon.task.GroupSummary"),
    (GroupReport, "ceylon.task.GroupReport"),
    (CancelGroup, "ceylon.task.CancelGroup"),
]
for _cls, _tag in _TAGS:
    default_registry.register(_cls, tag=_tag)
