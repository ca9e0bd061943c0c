"""`TaskExecutionAgent`: a worker that runs the tasks a task playground hands it."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from ..base.agent import BaseAgent
from ..errors import AgentNotFoundError, NotConnectedError
from ..handlers import on
from ..peer import AgentDetail
from .data import (
    HoldQuery,
    ResultsRecorded,
    TaskMessage,
    TaskStatus,
    TaskStatusUpdate,
    WorkerState,
)

__all__ = ["TaskExecutionAgent"]

Work = Callable[[TaskMessage], Awaitable[Any]]

#: how many distinct senders of unwanted tasks are each warned about once
MAX_WARNED_SENDERS = 1024
OVER_CAPACITY = "worker over capacity"


class TaskExecutionAgent(BaseAgent):
    """Runs up to `max_concurrent_tasks` tasks at once and reports each one back.

    It takes tasks only from the playground it is connected to: a `TaskMessage` another
    member sends straight to it is ignored (with a warning, once per sender). It never
    runs more than `max_concurrent_tasks` at once: a task beyond that (the playground
    sends none, except around a reconnect) waits its turn, in order, in a queue of at
    most `max_concurrent_tasks`; one more than that is reported FAILED at once,
    "worker over capacity" (and so retried elsewhere if the playground retries).

    It never drops an outcome: each report is kept until the playground says it is
    recorded (`ResultsRecorded`), and sent again after a reconnect, to whichever
    playground it is connected to then, with word of the tasks it is still running
    (IN_PROGRESS updates), so a playground resumed from its journal knows who has them.

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
        if isinstance(max_concurrent_tasks, bool) or not isinstance(max_concurrent_tasks, int):
            raise ValueError(
                f"max_concurrent_tasks must be an integer, got {max_concurrent_tasks!r}"
            )
        if max_concurrent_tasks < 1:
            raise ValueError(f"max_concurrent_tasks must be >= 1, got {max_concurrent_tasks}")
        extra = dict(kwargs.pop("extra_data", None) or {})
        extra.update(task_worker=True, max_concurrent_tasks=max_concurrent_tasks)
        super().__init__(name, role=role, extra_data=extra, **kwargs)
        self.worker_role = role
        self.max_concurrent_tasks = max_concurrent_tasks
        self.work = work
        self.tasks_done = 0
        #: tasks not run: sent by another member than the playground, or over capacity
        self.tasks_ignored = 0
        self.tasks_refused = 0
        self._running: set[asyncio.Task[None]] = set()
        self._busy = 0  # tasks running now (their slots are freed before reporting)
        self._backlog: collections.deque[tuple[TaskMessage, str]] = collections.deque()
        self._warned: set[str] = set()
        #: outcomes reported and not yet recorded by the playground, by task id
        self.unrecorded: dict[str, TaskStatusUpdate] = {}
        self._started: dict[str, float] = {}  # task id -> when it started, while running

    async def execute_task(self, task: TaskMessage) -> Any:
        """Do the work of one task; override, or pass ``work=``. Returns its result."""
        if self.work is not None:
            return await self.work(task)
        await asyncio.sleep(task.duration or 0)
        return None

    @on(TaskMessage)
    async def _receive_task(self, task: TaskMessage, agent: AgentDetail) -> None:
        # Each task runs in its own asyncio task, so this worker's tasks overlap up to
        # the capacity it declared; only its playground's tasks count (the sender is the
        # one the playground authenticated for the connection, it cannot be forged).
        if not self._from_playground(agent, "a task"):
            self.tasks_ignored += 1
            return
        if self._busy < self.max_concurrent_tasks:
            self._start(task, agent.id)
        elif len(self._backlog) < self.max_concurrent_tasks:
            self._log.info(
                "{} task(s) running, the capacity: task {} waits its turn", self._busy, task.task_id
            )
            self._backlog.append((task, agent.id))
        else:
            self.tasks_refused += 1
            self._log.warning(
                "task {} refused: {} running and {} waiting (capacity {})",
                task.task_id,
                self._busy,
                len(self._backlog),
                self.max_concurrent_tasks,
            )
            update = TaskStatusUpdate(
                task.task_id, TaskStatus.FAILED, self.name, None, OVER_CAPACITY
            )
            self._spawn(self._report(agent.id, update))

    @on(ResultsRecorded)
    async def _recorded(self, recorded: ResultsRecorded, agent: AgentDetail) -> None:
        if self.connected_playground is None:
            return  # leaving: nothing to forget any more
        if self._from_playground(agent, "a ResultsRecorded"):
            for task_id in recorded.task_ids:
                self.unrecorded.pop(task_id, None)

    @on(HoldQuery)
    async def _holding(self, query: HoldQuery, agent: AgentDetail) -> WorkerState | None:
        # Asked after messages may have been lost: handled after every task the same
        # playground sent before asking (one sender's messages keep their order).
        if not self._from_playground(agent, "a HoldQuery"):
            return None
        return self._state()

    def _state(self) -> WorkerState:
        held = [*self._started, *(task.task_id for task, _ in self._backlog)]
        return WorkerState(held, list(self.unrecorded))

    def receive_link_restored(self) -> None:
        super().receive_link_restored()
        self._spawn(self._announce())

    async def _announce(self) -> None:
        """After a reconnect: what is still running, then every outcome not recorded."""
        playground = self.connected_playground
        if playground is None:
            return
        running = [
            TaskStatusUpdate(task_id, TaskStatus.IN_PROGRESS, self.name, start_time=started)
            for task_id, started in self._started.items()
        ]
        if running or self.unrecorded:
            self._log.info(
                "reconnected: {} task(s) still running, {} outcome(s) to deliver again",
                len(running),
                len(self.unrecorded),
            )
        reports: list[TaskStatusUpdate | WorkerState] = [self._state(), *running]
        for update in [*reports, *self.unrecorded.values()]:
            await self._send_report(playground.id, update)

    def _from_playground(self, sender: AgentDetail, what: str) -> bool:
        playground = self.connected_playground
        if playground is not None and sender.id == playground.id:
            return True
        if sender.id not in self._warned and len(self._warned) < MAX_WARNED_SENDERS:
            self._warned.add(sender.id)
            self._log.warning(
                "ignoring {} from {}: this worker runs tasks only from its playground{} "
                "(said once per sender)",
                what,
                sender.name or sender.id,
                f" {playground.name}" if playground is not None else "",
            )
        return False

    def _start(self, task: TaskMessage, reply_to: str) -> None:
        self._busy += 1
        self._spawn(self._run(task, reply_to))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        job = asyncio.get_running_loop().create_task(work)
        self._running.add(job)
        job.add_done_callback(self._running.discard)

    def _next(self) -> None:
        while self._backlog and self._busy < self.max_concurrent_tasks:
            self._start(*self._backlog.popleft())

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
        if not self._from_playground(sender, f"a {type_name}"):
            return
        error = (
            f"worker {self.name} cannot run a {type_name}: {detail} (register the type in the "
            f"worker's process: ceylon worker --import MODULE)"
        )
        update = TaskStatusUpdate(fields["task_id"], TaskStatus.FAILED, self.name, None, error)
        self._spawn(self._report(sender.id, update))

    async def _run(self, task: TaskMessage, reply_to: str) -> None:
        self._started[task.task_id] = time.time()
        try:
            update = await self._execute(task)
        finally:
            # The slot is free before the report goes: the playground, which sends the
            # next task on reading it, can never find this worker still full.
            self._started.pop(task.task_id, None)
            self._busy -= 1
            self._next()
        self.unrecorded[update.task_id] = update
        await self._report(reply_to, update)

    async def _execute(self, task: TaskMessage) -> TaskStatusUpdate:
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
            return TaskStatusUpdate(
                task.task_id, TaskStatus.FAILED, self.name, None, error, started, time.time()
            )
        self.tasks_done += 1
        return TaskStatusUpdate(
            task.task_id, TaskStatus.COMPLETED, self.name, result, None, started, time.time()
        )

    async def _report(self, reply_to: str, update: TaskStatusUpdate) -> None:
        playground = self.connected_playground  # a new one, if it restarted meanwhile
        await self._send_report(playground.id if playground is not None else reply_to, update)

    async def _send_report(self, to: str, update: TaskStatusUpdate | WorkerState) -> None:
        try:
            try:
                await self.send_message(to, update)
            except TypeError as exc:  # the result cannot be encoded: say so instead
                if not isinstance(update, TaskStatusUpdate):
                    raise
                update.result, update.status = None, TaskStatus.FAILED
                update.error = f"the result cannot be sent: {exc}"
                await self.send_message(to, update)
        except (AgentNotFoundError, NotConnectedError) as exc:
            # kept in `unrecorded`: it goes again once the worker is connected again
            what = update.task_id if isinstance(update, TaskStatusUpdate) else "state"
            self._log.info("could not report task {} yet: {}", what, exc)

    async def _stop_running(self) -> None:
        self._backlog.clear()  # what waits is not started now
        jobs = list(self._running)
        for job in jobs:
            job.cancel()
        if jobs:
            await asyncio.wait(jobs)
        await super()._stop_running()
