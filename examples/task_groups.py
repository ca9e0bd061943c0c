"""Task groups for ``ceylon tasks run examples.task_groups:demo`` (used by scripts/demo).

Two groups: "ingest" (40 tasks, its goal met at 20) and "report" (10 tasks, starting only
when "ingest" is complete, one of them waiting for two others).
"""

from __future__ import annotations

from ceylon.task import TaskGroup, TaskGroupGoal, TaskManager, TaskMessage


def demo() -> list[TaskGroup]:
    ingest = TaskManager.create_task_group(
        "ingest",
        "read 40 files",
        [
            TaskMessage(name=f"read {i}", duration=0.02, required_role="processor")
            for i in range(40)
        ],
        goal=TaskGroupGoal("half read", "20 files read", lambda groups, done: len(done) >= 20),
        priority=2,
    )
    reports = [
        TaskMessage(name=f"report {i}", duration=0.01, required_role="processor") for i in range(10)
    ]
    report = TaskManager.create_task_group(
        "report",
        "summarise",
        reports,
        dependencies={reports[9].task_id: [reports[0].task_id, reports[1].task_id]},
        depends_on=[ingest.task_id],
    )
    return [ingest, report]
