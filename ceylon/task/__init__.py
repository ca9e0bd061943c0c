"""The task processor plugin (tutorial: "Building a Distributed Task Processing System")."""

from __future__ import annotations

from .assign import Assigner
from .data import (
    GoalStatus,
    GroupAccepted,
    GroupDone,
    ResultsRecorded,
    SubmitGroup,
    TaskGroup,
    TaskGroupGoal,
    TaskMessage,
    TaskRequest,
    TaskStatus,
    TaskStatusUpdate,
)
from .manager import TaskManager
from .playground import TaskPlayGround
from .plugin import TaskPlugin
from .stats import TaskStatistics
from .worker import TaskExecutionAgent

__all__ = [
    "Assigner",
    "GoalStatus",
    "GroupAccepted",
    "GroupDone",
    "ResultsRecorded",
    "SubmitGroup",
    "TaskExecutionAgent",
    "TaskGroup",
    "TaskGroupGoal",
    "TaskManager",
    "TaskMessage",
    "TaskPlayGround",
    "TaskPlugin",
    "TaskRequest",
    "TaskStatistics",
    "TaskStatus",
    "TaskStatusUpdate",
]
