"""The task plugin: the glue between the sans-I/O core and the playground.

Workers are agents that declare ``task_worker`` and ``max_concurrent_tasks`` in their
extra data (`TaskExecutionAgent` does). Ready tasks go to them as they have room; their
`TaskStatusUpdate`s come back to this plugin's handler. Everything that decides lives in
`TaskManager` and `Assigner`; this module only turns their decisions into messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from loguru import logger

from ..errors import AgentNotFoundError
from ..peer import AgentDetail
from ..plugin import Plugin
from .assign import Assigner, Assignment
from .data import (
    CancelGroup,
    GroupAccepted,
    GroupDone,
    GroupQuery,
    GroupReport,
    GroupSummary,
    HoldQuery,
    ResultsRecorded,
    SubmitGroup,
    TaskGroup,
    TaskMessage,
    TaskStatus,
    TaskStatusUpdate,
    WorkerState,
)
from .journal import Journal, NoJournal
from .manager import TaskManager, compact
from .stats import TaskStatistics, summarize
from .store import TaskStore

if TYPE_CHECKING:
    from ..base.playground import BasePlayGround

__all__ = ["StoreFactory", "TaskPlugin", "attach"]

#: Opens the plugin's store once its playground is active (a journal on NATS, say).
StoreFactory = Callable[["BasePlayGround"], Awaitable[TaskStore]]

WATCH_INTERVAL = 1.0
#: the most tasks one worker is handed at once, whatever it declares
MAX_WORKER_SLOTS = 64
#: how many settled groups are kept, at most, and for how long (seconds)
KEEP_FINISHED_GROUPS = 1000
KEEP_FINISHED_FOR = 3600.0
#: seconds a resumed playground waits for a worker to come back for a task it had
LEASE = 10.0
#: seconds to wait for a worker to say what it holds after messages were lost
RECOUNT_TIMEOUT = 10.0


class TaskPlugin(Plugin["BasePlayGround"]):
    """Runs task groups on the workers connected to a playground.

    Args:
        max_retries: how many more times a task that raised is tried.
        role_timeout: seconds a ready task may wait for a worker of its role to exist;
            then it fails with a clear error. None waits for ever (with a warning).
        task_timeout: the `TaskMessage.timeout` of tasks whose task and group set none
            (None: no limit).
        max_worker_slots: the most tasks one worker is handed at once; a worker that
            declares more (``max_concurrent_tasks`` in its extra data) gets this many, so
            that no member can take the work in and sit on it.
        keep_finished_groups: the most ended groups kept once settled (they and every
            group that depends on them ended); older ones are forgotten, their tasks and
            results with them, so that memory is freed. None: no count limit.
        keep_finished_for: seconds a settled group is kept at most. None: no age limit.
            Forgetting is lazy (when groups are added, and on the periodic check), so
            results stay readable right after `wait_for_completion`.
        store: where the state is journaled (`ceylon.task.store`), or an async function
            of the playground that opens it when the plugin starts (a journal in
            JetStream, on NATS); a playground started on an existing journal takes its
            groups back (see the README's Durability). In memory when not given.
        lease: seconds a resumed playground keeps a task for the worker that had it
            (it comes back and says it still runs it, or delivers its outcome); then the
            task is handed out again.
    """

    name = "tasks"

    def __init__(
        self,
        max_retries: int = 0,
        role_timeout: float | None = None,
        task_timeout: float | None = None,
        max_worker_slots: int = MAX_WORKER_SLOTS,
        keep_finished_groups: int | None = KEEP_FINISHED_GROUPS,
        keep_finished_for: float | None = KEEP_FINISHED_FOR,
        store: TaskStore | StoreFactory | None = None,
        lease: float = LEASE,
    ) -> None:
        super().__init__()
        if task_timeout is not None and task_timeout <= 0:
            raise ValueError(f"task_timeout must be positive, got {task_timeout}")
        if isinstance(max_worker_slots, bool) or not isinstance(max_worker_slots, int):
            raise ValueError(f"max_worker_slots must be an integer, got {max_worker_slots!r}")
        if max_worker_slots < 1:
            raise ValueError(f"max_worker_slots must be >= 1, got {max_worker_slots}")
        self.max_worker_slots = max_worker_slots
        self.keep_finished_groups = _check_keep(keep_finished_groups)
        self.keep_finished_for = _check_keep_for(keep_finished_for)
        self.manager = TaskManager()
        self.manager.journal = []  # what ended, for the submitters (see _flush)
        self.assigner = Assigner(max_retries)
        self.role_timeout = role_timeout
        self.task_timeout = task_timeout
        self._names: dict[str, str] = {}  # worker id -> name
        self._watchers: dict[str, str] = {}  # group id -> id of the agent that submitted it
        self._changed = asyncio.Event() if _in_loop() else None
        self._watch: asyncio.Task[None] | None = None
        self._orphaned_since: dict[str, float] = {}
        self._warned: set[str] = set()
        self._forgotten_tasks = 0  # since the assigner's tables were last rebuilt
        self._log = logger.bind(agent="tasks")
        self._store_factory = store if callable(store) else None
        self.journal = Journal(store) if store is not None and not callable(store) else NoJournal()
        self.lease = lease
        #: tasks a resumed playground keeps for the worker (name) that had them, and until
        self._leased: dict[str, tuple[str, float]] = {}
        #: those its worker is back for, until it says it runs them: (worker id, until)
        self._unconfirmed: dict[str, tuple[str, float]] = {}
        #: outcomes recorded, not yet acknowledged, by worker id
        self._to_ack: dict[str, list[str]] = {}
        self._ack_pending = False
        self._recounts: set[asyncio.Task[None]] = set()

    def attach(self, playground: BasePlayGround) -> None:
        super().attach(playground)
        playground.on(TaskStatusUpdate)(self._on_update)
        playground.on(WorkerState)(self._on_worker_state)
        playground.on(SubmitGroup)(self._on_submit)
        playground.on(GroupQuery)(self._on_query)
        playground.on(CancelGroup)(self._on_cancel)
        playground.require_permission(TaskStatusUpdate, "serve_tasks")
        playground.require_permission(WorkerState, "serve_tasks")
        playground.require_permission(SubmitGroup, "submit_tasks")
        playground.require_permission(CancelGroup, "submit_tasks")
        playground.require_permission(GroupQuery, "query")

    @property
    def _pg(self) -> BasePlayGround:
        assert self.playground is not None, "the plugin is not attached to a playground"
        return self.playground

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        if self._changed is None:
            self._changed = asyncio.Event()
        if self._store_factory is not None:
            self.journal = Journal(await self._store_factory(self._pg))
        self._resume()
        self._watch = asyncio.get_running_loop().create_task(self._watch_roles())

    async def stop(self) -> None:
        for job in list(self._recounts):
            job.cancel()
        if self._recounts:
            await asyncio.wait(list(self._recounts))
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.wait({self._watch})
            self._watch = None
        await self.journal.store.aclose()

    def _resume(self) -> None:
        """Take back what the journal holds (nothing, for a new one)."""
        restored = self.journal.restore(self.manager)
        self.manager.journal = []  # what ended before the restart was told then
        if not restored.groups:
            return
        self.assigner.attempts.update(restored.attempts)
        until = time.monotonic() + self.lease
        self._leased = {t: (worker, until) for t, worker in restored.leased.items()}
        for task_id in restored.leased:
            task = self.manager.tasks[task_id]
            priority = self.manager.group_of(task_id).priority
            self.assigner.known(task_id, task.required_role, priority)
        self._log.info(
            "resumed {} group(s) from {}: {} task(s) ended, {} waiting for their workers "
            "for {:g} s, {} ready",
            restored.groups,
            self.journal.store.path,
            restored.ended,
            len(restored.leased),
            self.lease,
            len(restored.ready),
        )
        self._ready(restored.ready)

    # -- workers ----------------------------------------------------------------------

    def join_refusal(self, agent: AgentDetail, refusal: Callable[[str], str | None]) -> str | None:
        if agent.extra_data.get("task_worker"):
            return refusal("serve_tasks")
        return None

    def agent_joined(self, agent: AgentDetail) -> None:
        extra = agent.extra_data
        if not extra.get("task_worker"):
            return
        if self.playground is not None and not self.playground.permits(agent.id, "serve_tasks"):
            return
        self._names[agent.id] = agent.name
        capacity = self._capacity(agent)
        held = [t for t, (worker, _) in self._leased.items() if worker == agent.name]
        until = time.monotonic() + self.lease
        for task_id in held:  # its slots are kept until it says it runs them, or the lease ends
            del self._leased[task_id]
            self._unconfirmed[task_id] = (agent.id, until)
        self._log.info(
            "worker {} ({}) offers {} slot(s){}",
            agent.name,
            agent.role,
            capacity,
            f", back for {len(held)} task(s) it had" if held else "",
        )
        self._dispatch(self.assigner.join(agent.id, agent.role, capacity, held))

    def _capacity(self, agent: AgentDetail) -> int:
        """The slots a worker gets: what it declares, at most `max_worker_slots`."""
        declared = agent.extra_data.get("max_concurrent_tasks", 1)
        if isinstance(declared, bool) or not isinstance(declared, int) or declared < 1:
            self._log.warning(
                "worker {} declares max_concurrent_tasks={!r}, not a positive integer; "
                "it gets 1 slot",
                agent.name,
                declared,
            )
            return 1
        if declared > self.max_worker_slots:
            self._log.warning(
                "worker {} declares max_concurrent_tasks={}; it gets {} (max_worker_slots)",
                agent.name,
                declared,
                self.max_worker_slots,
            )
            return self.max_worker_slots
        return declared

    def agent_left(self, agent: AgentDetail) -> None:
        returned, assignments = self.assigner.leave(agent.id)
        # Cut by the playground's own shutdown: the journal keeps the tasks theirs, so
        # that after a restart they are leased to the same workers.
        closing = self.playground is not None and not self.playground.started
        for task_id in returned:
            self._unconfirmed.pop(task_id, None)
            self.manager.requeued(task_id)
            if not closing:
                self._journal_requeued(task_id)
        if returned:
            self._log.warning(
                "worker {} left holding {} task(s); they go to other workers",
                agent.name,
                len(returned),
            )
        self._dispatch(assignments)
        self._notify()

    # -- tasks ------------------------------------------------------------------------

    def add_groups(self, groups: list[TaskGroup]) -> None:
        """Take task groups in and hand out what can run now.

        Raises:
            ValueError: the groups cannot run (a dependency cycle, a self-dependency, an
                unknown dependency, a repeated id); nothing was added.
        """
        ready = self.manager.add_groups(groups)
        for group in groups:
            self.journal.group_added(group, self._watchers.get(group.task_id, ""))
        self._ready(ready)
        self._notify()
        keep = self.keep_finished_groups
        if keep is not None and self.manager.ended_held > keep:
            self.forget_finished(time.monotonic())

    def _ready(self, tasks: list[TaskMessage]) -> None:
        roles = set()
        for task in tasks:
            self.assigner.add(
                task.task_id, task.required_role, self.manager.group_of(task.task_id).priority
            )
            roles.add(task.required_role)
        for role in roles:
            self._dispatch(self.assigner.assign(role))

    def _dispatch(self, assignments: list[Assignment]) -> None:
        for task_id, worker_id in assignments:
            task = self.manager.tasks[task_id]
            if task.timeout is None:
                task.timeout = self.manager.group_of(task_id).task_timeout or self.task_timeout
            worker = self._names.get(worker_id, worker_id)
            self.manager.started(task_id, worker)
            self.journal.started(task, worker, self.assigner.attempts.get(task_id, 1))
            try:
                self._pg.send_message_nowait(worker_id, task)
            except AgentNotFoundError:
                pass  # it is leaving: agent_left gives the task back

    async def _on_update(self, update: TaskStatusUpdate, agent: AgentDetail) -> None:
        task_id = update.task_id
        if update.status in (
            TaskStatus.COMPLETED,
            TaskStatus.FAILED,
        ):  # recorded now, or before: either way the worker may forget it
            self._to_ack.setdefault(agent.id, []).append(task_id)
        if task_id not in self.manager.tasks:
            self._log.warning("update for unknown task {} from {}", task_id, agent.name)
            self._notify()
            return
        held = self._unconfirmed.get(task_id)
        if held is not None and held[0] == agent.id:
            del self._unconfirmed[task_id]  # it does run it (or did): no need to wait
        if update.status is TaskStatus.COMPLETED:
            accepted, assignments = self.assigner.completed(task_id, agent.id)
            if accepted:
                ready = self.manager.completed(
                    task_id, update.result, update.start_time, update.end_time
                )
                self._dispatch(assignments)
                self._ready(ready)
        elif update.status is TaskStatus.FAILED:
            outcome, assignments = self.assigner.failed(task_id, agent.id)
            if outcome == "retry":
                self.manager.requeued(task_id)
                self._journal_requeued(task_id)
                self._log.info(
                    "task {} failed on {}, retrying: {}", task_id, agent.name, update.error
                )
            elif outcome == "failed":
                self._log.warning("task {} failed on {}: {}", task_id, agent.name, update.error)
                ready = self.manager.failed(task_id, update.error or "failed")
                self._ready(ready)
            self._dispatch(assignments)
        self._notify()

    async def _on_worker_state(self, state: WorkerState, agent: AgentDetail) -> None:
        """A worker back after a restart says what it holds: the tasks it had before the
        restart that it does not hold never reached it, and go to a worker again now
        rather than after the lease. (Tasks handed out since cannot be judged: they may
        still be on their way.)"""
        kept = set(state.running) | set(state.finished)
        lost = [
            task_id
            for task_id, (holder, _) in self._unconfirmed.items()
            if holder == agent.id and task_id not in kept
        ]
        self._give_back(lost, f"{len(lost)} task(s) given to {agent.name} never reached it")

    def messages_lost(self, agent: AgentDetail | None) -> None:
        """Ask the workers concerned what they hold; the tasks given to them before the
        question that they do not hold are given out again."""
        workers = [w for w in self.assigner.workers if agent is None or w == agent.id]
        for worker_id in workers:
            given = [t for t, holder in self.assigner.holder.items() if holder == worker_id]
            if given:
                job = asyncio.get_running_loop().create_task(self._recount(worker_id, given))
                self._recounts.add(job)
                job.add_done_callback(self._recounts.discard)

    async def _recount(self, worker_id: str, given: list[str]) -> None:
        name = self._names.get(worker_id, worker_id)
        try:
            state = await self._pg.ask(worker_id, HoldQuery(), timeout=RECOUNT_TIMEOUT)
        except Exception as exc:  # gone, or lost again: its leave (or the next loss) tells
            self._log.warning("could not ask {} what it holds: {}", name, exc)
            return
        if not isinstance(state, WorkerState):
            return
        kept = set(state.running) | set(state.finished)
        lost = [t for t in given if t not in kept and self.assigner.holder.get(t) == worker_id]
        self._give_back(lost, f"{len(lost)} task(s) given to {name} were lost on the way")

    def _give_back(self, lost: list[str], why: str) -> None:
        """Tasks a worker was given and does not hold: to a worker again, first in line."""
        for task_id in lost:
            self._unconfirmed.pop(task_id, None)
            self.manager.requeued(task_id)
            self._journal_requeued(task_id)
            self._dispatch(self.assigner.release(task_id))
        if lost:
            self._log.warning("{}; handed out again", why)

    def _journal_requeued(self, task_id: str) -> None:
        self.journal.requeued(self.manager.tasks[task_id], self.assigner.attempts.get(task_id, 0))

    def _send_acks(self, batch: dict[str, list[str]]) -> None:
        for worker_id, task_ids in batch.items():
            with contextlib.suppress(AgentNotFoundError):
                self._pg.send_message_nowait(worker_id, ResultsRecorded(task_ids))

    def _flush(self) -> None:
        """Journal what ended and tell each submitter how its tasks and groups ended:
        whether a worker reported it, or a dependency, an upstream group or a missing
        role failed it. Workers hear their outcomes are recorded once they are durable."""
        journal = self.manager.journal
        if journal:
            self._tell_ended(journal)
        if self._to_ack and not self._ack_pending:
            # One ResultsRecorded per worker per loop turn, not one per outcome.
            self._ack_pending = True
            asyncio.get_running_loop().call_soon(self._ack)

    def _ack(self) -> None:
        self._ack_pending = False
        batch, self._to_ack = self._to_ack, {}
        if batch:
            self.journal.store.when_durable(lambda: self._send_acks(batch))

    def _tell_ended(self, journal: list[tuple[str, str]]) -> None:
        ended, journal[:] = list(journal), []
        for kind, ident in ended:
            if kind == "group":
                watcher = self._watchers.pop(ident, None)
                group = self.manager.task_groups[ident]
                self.journal.group_ended(group)
                message: Any = GroupDone(ident, group.status)
            else:
                task = self.manager.tasks[ident]
                attempts = self.assigner.attempts.get(ident, 0)
                self.journal.ended(task, self.manager.errors.get(ident), attempts)
                watcher = self._watchers.get(self.manager.group_of(ident).task_id)
                message = self._update_of(ident)
            if watcher is not None:
                with contextlib.suppress(AgentNotFoundError):
                    self._pg.send_message_nowait(watcher, message)

    async def _on_submit(self, request: SubmitGroup, agent: AgentDetail) -> GroupAccepted:
        # Asked (`ask`): the reply is the return value; a SubmitGroup that cannot be
        # decoded here is refused to the asker by the runtime, naming the type.
        group = TaskManager.create_task_group(
            request.name,
            request.description,
            request.tasks,
            dependencies=request.dependencies,
            depends_on=request.depends_on,
            priority=request.priority,
        )
        group.task_timeout = request.task_timeout
        if request.group_id:
            group.task_id = request.group_id
            for task in group.subtasks:
                task.group_id = group.task_id
        reset = sum(
            t.status is not TaskStatus.PENDING
            or t.completed
            or t.result is not None
            or t.assigned_to is not None
            for t in group.subtasks
        )
        try:
            self.manager.validate([group])
        except ValueError as exc:
            self._log.warning("refused group {!r} from {}: {}", request.name, agent.name, exc)
            return GroupAccepted(request.request, "", str(exc))
        self._watchers[group.task_id] = agent.id  # first: the group may end at once
        self.add_groups([group])
        if reset:
            self._log.warning(
                "group {!r} from {}: {} task(s) came with a status, result or worker; reset",
                request.name,
                agent.name,
                reset,
            )
        await self._durable()  # accepted means journaled: a crash now does not lose it
        return GroupAccepted(request.request, group.task_id)

    async def _durable(self) -> None:
        """Wait until what was journaled so far is durable."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def durable() -> None:
            if not done.done():
                done.set_result(None)

        self.journal.store.when_durable(durable)
        await done

    # -- managing groups (ceylon tasks list/show/cancel, reconnecting submitters) --------

    async def _on_query(self, query: GroupQuery, agent: AgentDetail) -> GroupReport:
        manager = self.manager
        groups = [
            g
            for g in manager.task_groups.values()
            if (not query.group_id or query.group_id in (g.task_id, g.name))
            and (not query.name or g.name == query.name)
        ]
        report = GroupReport(query.request, [self._summary(g) for g in groups])
        if (query.group_id or query.name) and not groups:
            report.error = (
                f"no task group {query.group_id or query.name!r} (never given, or forgotten)"
            )
        for group in groups:
            if query.watch and group.status not in (TaskStatus.COMPLETED, TaskStatus.FAILED):
                self._watchers[group.task_id] = agent.id
            if query.tasks:
                for task in group.subtasks:
                    report.tasks.append(self._update_of(task.task_id))
                    report.names[task.task_id] = task.name
        return report

    async def _on_cancel(self, cancel: CancelGroup, agent: AgentDetail) -> GroupReport:
        group = self.manager.task_groups.get(cancel.group_id)
        named = [g for g in self.manager.task_groups.values() if g.name == cancel.group_id]
        if group is None and len(named) == 1:
            group = named[0]
        if group is None:
            error = f"no task group {cancel.group_id!r} (never given, or forgotten)"
            return GroupReport(cancel.request, [], error=error)
        ended = (TaskStatus.COMPLETED, TaskStatus.FAILED)
        doomed = [t.task_id for t in group.subtasks if t.status not in ended]
        self.assigner.discard(set(doomed))
        reason = f"cancelled by {agent.name}"
        for task_id in doomed:
            self._leased.pop(task_id, None)
            self._ready(self.manager.failed(task_id, reason))
        self._log.warning("group {!r} {}: {} task(s) cancelled", group.name, reason, len(doomed))
        self._notify()
        return GroupReport(cancel.request, [self._summary(group)])

    def _summary(self, group: TaskGroup) -> GroupSummary:
        tasks = group.subtasks
        done = sum(t.status is TaskStatus.COMPLETED for t in tasks)
        failed = sum(t.status is TaskStatus.FAILED for t in tasks)
        return GroupSummary(group.task_id, group.name, group.status, len(tasks), done, failed)

    def _update_of(self, task_id: str) -> TaskStatusUpdate:
        task = self.manager.tasks[task_id]
        return TaskStatusUpdate(
            task_id,
            task.status,
            task.assigned_to or "",
            task.result,
            self.manager.errors.get(task_id),
            task.start_time,
            task.end_time,
        )

    # -- roles nobody serves -----------------------------------------------------------

    async def _watch_roles(self) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL)  # a periodic check, not a synchronisation
            now = time.monotonic()
            self.check_roles(now)
            self.forget_finished(now)
            self.expire_leases(now)

    def expire_leases(self, now: float) -> None:
        """Hand out again the resumed tasks whose workers did not come back in time."""
        expired = [t for t, (_, until) in self._leased.items() if until <= now]
        for task_id in expired:
            del self._leased[task_id]
            self.manager.requeued(task_id)
            self._journal_requeued(task_id)
            self._dispatch(self.assigner.requeue(task_id))
        unconfirmed = [t for t, (_, until) in self._unconfirmed.items() if until <= now]
        for task_id in unconfirmed:  # back, but it never got it (or lost it)
            del self._unconfirmed[task_id]
            self.manager.requeued(task_id)
            self._journal_requeued(task_id)
            self._dispatch(self.assigner.release(task_id))
        expired += unconfirmed
        if expired:
            self._log.warning(
                "{} resumed task(s) had no worker back within {:g} s: handed out again",
                len(expired),
                self.lease,
            )
            self._notify()

    def check_roles(self, now: float) -> None:
        """Warn about roles no worker has; past `role_timeout`, fail their tasks."""
        orphaned = set(self.assigner.roles_without_workers())
        for role in list(self._orphaned_since):
            if role not in orphaned:
                del self._orphaned_since[role]
                self._warned.discard(role)
        for role in orphaned:
            since = self._orphaned_since.setdefault(role, now)
            if role not in self._warned:
                self._warned.add(role)
                self._log.warning(
                    "{} task(s) need a worker with role {!r} and none is connected",
                    self.assigner.waiting(role),
                    role,
                )
            if self.role_timeout is not None and now - since >= self.role_timeout:
                reason = f"no worker with role {role!r} joined within {self.role_timeout} s"
                for task_id in self.assigner.drop_role(role):
                    self._ready(self.manager.failed(task_id, reason))
                    self._log.error("task {} failed: {}", task_id, reason)
                del self._orphaned_since[role]
                self._notify()

    # -- forgetting finished groups ------------------------------------------------------

    def forget_finished(self, now: float) -> list[str]:
        """Forget the settled groups past `keep_finished_groups` or `keep_finished_for`.

        `now` is a `time.monotonic` reading. Returns the ids of the groups forgotten.
        """
        self._flush()  # their submitters hear how they ended first
        manager = self.manager
        doomed = manager.finished_to_forget(now, self.keep_finished_groups, self.keep_finished_for)
        tasks = 0
        self.journal.forget(doomed)
        for group_id in doomed:
            self._watchers.pop(group_id, None)
            for task_id in manager.forget(group_id):
                self._forget_task(task_id)
                tasks += 1
        if doomed:
            self._log.debug("forgot {} finished group(s), {} task(s)", len(doomed), tasks)
            self._forgotten_tasks += tasks
            if self._forgotten_tasks >= max(1024, len(self.assigner.attempts)):
                self._forgotten_tasks = 0
                compact(self.assigner.attempts)
                compact(self.assigner._role_of)
                compact(self.assigner._priority)
        return doomed

    def _forget_task(self, task_id: str) -> None:
        """Drop what the assigner keeps per task (an ended task is neither queued nor held)."""
        assigner = self.assigner
        if task_id in assigner.holder:
            return
        assigner.attempts.pop(task_id, None)
        # Assigner has no method for this (yet); its per-task maps would grow for ever.
        assigner._role_of.pop(task_id, None)
        assigner._priority.pop(task_id, None)

    # -- results ----------------------------------------------------------------------

    def _notify(self) -> None:
        self.manager.stamp_ended(time.monotonic())
        self._flush()
        if self._changed is not None:
            self._changed.set()

    async def wait_for_completion(
        self, timeout: float | None = None, group_id: str | None = None
    ) -> None:
        """Wait until every task given so far has ended, or only those of one group.

        Args:
            group_id: the group's ``task_id``: wait for it alone (it ends when each of its
                tasks completed or failed), whatever other groups do.

        Raises:
            TimeoutError: `timeout` passed first.
            KeyError: `group_id` is not a group of this plugin.
        """
        if group_id is not None and group_id not in self.manager.task_groups:
            raise KeyError(f"unknown task group {group_id!r} (never given, or forgotten)")
        if self._changed is None:
            self._changed = asyncio.Event()
        async with asyncio.timeout(timeout):
            while not self._done(group_id):
                self._changed.clear()
                await self._changed.wait()

    def _done(self, group_id: str | None) -> bool:
        if group_id is None:
            return self.manager.all_done()
        group = self.manager.task_groups.get(group_id)
        if group is None:  # known when the wait began: it ended, and was forgotten since
            return True
        status = group.status
        return status in (TaskStatus.COMPLETED, TaskStatus.FAILED)

    def status(self) -> dict[str, Any]:
        """Counts for ``ceylon status``: groups, tasks by state, workers and free slots."""
        manager, assigner = self.manager, self.assigner
        groups = manager.task_groups.values()
        return {
            "groups": len(manager.task_groups),
            "groups done": sum(g.status is TaskStatus.COMPLETED for g in groups),
            "groups forgotten": manager.groups_forgotten,
            "tasks": len(manager.tasks),
            "waiting": assigner.waiting(),
            "running": len(assigner.holder),
            "completed": len(manager.completed_tasks),
            "failed": len(manager.failed_tasks),
            "workers": len(assigner.workers),
            "free slots": sum(slot.free for slot in assigner.workers.values()),
        }

    def statistics(self) -> TaskStatistics:
        manager = self.manager
        return summarize(
            manager.tasks.values(), manager.completed_tasks.values(), len(manager.failed_tasks)
        )


def attach(playground: BasePlayGround, **options: Any) -> TaskPlugin:
    """Host the task plugin on `playground` (what ``--plugin tasks`` does)."""
    return playground.add_plugin(TaskPlugin(**options))


def _check_keep(value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"keep_finished_groups must be an integer >= 0, got {value!r}")
    return value


def _check_keep_for(value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ValueError(f"keep_finished_for must be a number of seconds, got {value!r}")
    if value < 0:
        raise ValueError(f"keep_finished_for must be >= 0, got {value}")
    return float(value)


def _in_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
