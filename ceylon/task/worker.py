"""`TaskExecutionAgent`: a worker that runs the tasks a task playground hands it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..base.agent import BaseAgent
from ..handlers import on
from ..peer import AgentDetail
from .data import TaskMessage, TaskStatus, TaskStatusUpdate

__all__ = ["TaskExecutionAgent"]

Work = Callable[[TaskMessage], Awaitable[Any]]


class TaskExecutionAgent(BaseAgent):
    """Runs up to `max_concurrent_tasks` tasks at once and reports each one back.

    By default a task sleeps its ``duration``; give real work as a coroutine function
    (``work=``) or override `execute_task`. What it returns is the task's ``result``;
    if it raises, the task is reported FAILED with the error.

    Args:
        name: the agent's name.
        worker_role: matched against each task's ``required_role`` (``role=`` works too,
            for ``ceylon worker --role``).
        max_concurrent_tasks: how many tasks it runs at once.
        work: ``async def work(task) -> result``.
    """

    def __init__(
        self,
        name: str,
        worker_role: str = "worker",
        max_concurrent_tasks: int = 3,
        *,
        role: str | None = None,
        work: Work | None = None,
        **kwargs: Any,
    ) -> None:
        role = role or worker_role
        if max_concurrent_tasks < 1:
            raise ValueError(f"max_concurrent_tasks must be >= 1, got {max_concurrent_tasks}")
        extra = dict(kwargs.pop("extra_data", None) or {})
        extra.update(task_worker=True, max_concurrent_tasks=max_concurrent_tasks)
        super().__init__(name, role=role, extra_data=extra, **kwargs)
        self.worker_role = role
        self.max_concurrent_tasks = max_concurrent_tasks
        self.work = work
        self.tasks_done = 0
        self._running: set[asyncio.Task[None]] = set()

    async def execute_task(self, task: TaskMessage) -> Any:
        """Do the work of one task; override, or pass ``work=``. Returns its result."""
        if self.work is not None:
            return await self.work(task)
        await asyncio.sleep(task.duration or 0)
        return None

    @on(TaskMessage)
    async def _receive_task(self, task: TaskMessage, agent: AgentDetail) -> None:
        # Each task runs in its own asyncio task, so this worker's tasks overlap up to
        # the capacity it declared (the playground never sends more).
        job = asyncio.get_running_loop().create_task(self._run(task, agent.id))
        self._running.add(job)
        job.add_done_callback(self._running.discard)

    def message_dropped(
        self,
        type_name: str,
        reason: str,
        detail: str,
        fields: dict[str, Any] | None,
        sender: AgentDetail,
    ) -> None:
        # A task this worker cannot build (a TaskMessage subclass it does not know, say)
        # must not sit on the playground's books as running: it fails at once, saying why.
        if fields is None or not isinstance(fields.get("task_id"), str):
            return
        if "required_role" not in fields or "duration" not in fields:
            return  # not a task
        error = (
            f"worker {self.name} cannot run a {type_name}: {detail} (register the type in the "
            f"worker's process: ceylon worker --import MODULE)"
        )
        update = TaskStatusUpdate(fields["task_id"], TaskStatus.FAILED, self.name, None, error)
        job = asyncio.get_running_loop().create_task(self._report(sender.id, update))
        self._running.add(job)
        job.add_done_callback(self._running.discard)

    async def _run(self, task: TaskMessage, reply_to: str) -> None:
        started = time.time()
        deadline = asyncio.timeout(task.timeout)
        try:
            async with deadline:
                result = await self.execute_task(task)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if isinstance(exc, TimeoutError) and deadline.expired():
                error = f"timed out after {task.timeout:g} s"
            else:
                error = f"{type(exc).__name__}: {exc}"
            update = TaskStatusUpdate(
                task.task_id, TaskStatus.FAILED, self.name, None, error, started, time.time()
            )
        else:
            self.tasks_done += 1
            update = TaskStatusUpdate(
                task.task_id, TaskStatus.COMPLETED, self.name, result, None, started, time.time()
            )
        await self._report(reply_to, update)

    async def _report(self, reply_to: str, update: TaskStatusUpdate) -> None:
        try:
            await self.send_message(reply_to, update)
        except TypeError as exc:  # the result cannot be encoded: say so instead
            update.result, update.status = None, TaskStatus.FAILED
            update.error = f"the result cannot be sent: {exc}"
            await self.send_message(reply_to, update)

    async def _stop_running(self) -> None:
        jobs = list(self._running)
        for job in jobs:
            job.cancel()
        if jobs:
            await asyncio.wait(jobs)
        await super()._stop_running()
