"""The task-processing tutorial, assembled from its snippets as a user would.

    python examples/task_processing.py

Everything below the imports is the tutorial's code as written ("Building a Distributed
Task Processing System with Ceylon"); only `print_statistics`, which the tutorial calls
but does not show, and `create_task_group`, which wraps its "Create Task Groups" snippet,
are filled in. Set CEYLON_PORT to run it on another port than the tutorial's 8888.
"""

import asyncio
import uuid
from typing import Callable, Dict, List

from loguru import logger

from ceylon.task import TaskExecutionAgent, TaskManager, TaskPlayGround
from ceylon.task.data import GoalStatus, TaskGroup, TaskGroupGoal, TaskMessage


class TaskProcessor:
    def __init__(self, num_workers: int = 2, tasks_per_worker: int = 2):
        self.playground = TaskPlayGround(name="task_processor")
        self.workers = [
            TaskExecutionAgent(
                f"worker{i}",
                "processor",
                max_concurrent_tasks=tasks_per_worker
            )
            for i in range(num_workers)
        ]

    def create_processing_tasks(self, num_tasks: int) -> List[TaskMessage]:
        return [
            TaskMessage(
                task_id=str(uuid.uuid4()),
                name=f"Process Data Item {i}",
                description=f"Processing task {i}",
                duration=1,
                required_role="processor",
                metadata={"item_number": i}
            )
            for i in range(num_tasks)
        ]

    def create_goal_checker(self, required_tasks: int) -> Callable:
        def check_completion(task_groups: Dict[str, TaskGroup],
                             completed_tasks: Dict[str, TaskMessage]) -> bool:
            completed_group_tasks = sum(
                1 for task in completed_tasks.values()
                if hasattr(task, 'group_id') and
                task.group_id in task_groups
            )
            logger.info(f"Progress: {completed_group_tasks}/{required_tasks} tasks completed")
            return completed_group_tasks >= required_tasks

        return check_completion

    def create_task_group(self, num_tasks: int, required_tasks: int) -> TaskGroup:
        processing_group = TaskManager.create_task_group(
            name="Data Processing",
            description=f"Process {num_tasks} data items, goal achieves at {required_tasks}",
            subtasks=self.create_processing_tasks(num_tasks),
            goal=TaskGroupGoal(
                name="Partial Processing Complete",
                description=f"Complete at least {required_tasks} processing tasks",
                check_condition=self.create_goal_checker(required_tasks),
                success_message="Successfully completed minimum required tasks!",
                failure_message="Failed to complete minimum required tasks."
            ),
            priority=1
        )
        return processing_group

    async def monitor_progress(self, active_playground: TaskPlayGround,
                               processing_group: TaskGroup) -> None:
        while True:
            await asyncio.sleep(1)
            current_group = active_playground.task_manager.task_groups[processing_group.task_id]

            # Print status updates
            logger.info(f"Group Status: {current_group.status}")
            if current_group.goal:
                logger.info(f"Goal Status: {current_group.goal.status}")

            if (current_group.goal and
                    current_group.goal.status == GoalStatus.ACHIEVED):
                logger.info("Goal achieved! System can stop while tasks continue.")
                break

    async def print_statistics(self, active_playground: TaskPlayGround) -> None:
        completed_tasks = active_playground.get_completed_tasks()
        durations = [t.end_time - t.start_time for t in completed_tasks.values()]
        logger.info("Final Statistics:")
        logger.info(f"Completed Tasks: {len(completed_tasks)}")
        if durations:
            logger.info(f"Average Duration: {sum(durations) / len(durations):.1f}s")

    async def run(self, num_tasks: int = 10, required_tasks: int = 5) -> None:
        processing_group = self.create_task_group(num_tasks, required_tasks)

        async with self.playground.play(workers=self.workers) as active_playground:
            await active_playground.assign_task_groups([processing_group])
            await self.monitor_progress(active_playground, processing_group)
            await self.print_statistics(active_playground)


async def main():
    processor = TaskProcessor(num_workers=2, tasks_per_worker=2)
    await processor.run(num_tasks=10, required_tasks=5)

if __name__ == "__main__":
    asyncio.run(main())
