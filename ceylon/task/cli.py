"""``ceylon tasks run MODULE:FACTORY``: run task groups with a progress bar and statistics.

FACTORY is a function (or coroutine function) returning a `TaskGroup` or a list of them.
By default the command hosts its own playground and starts local worker processes
(``--workers`` per role the tasks need); ``--remote N`` waits for N workers started
elsewhere instead; ``--connect HOST:PORT`` submits the groups to a running
``ceylon playground --plugin tasks`` and follows them from here (goals are evaluated
here, where their functions live).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import enum
import inspect
import itertools
import json
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from loguru import logger
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

import transport

from ..base.agent import BaseAgent
from ..cli import (
    EXIT_FAILED,
    UsageError,
    _add_security,
    _client_tls,
    _server_tls,
    address,
    connect_agent,
    interrupted_exit,
    load_object,
    port_number,
    run_interruptibly,
    start_listening,
)
from ..config import Settings
from ..errors import AgentNotFoundError, AskTimeout, NotConnectedError, RemoteHandlerError
from ..handlers import on
from ..process import Process, python_command
from .data import (
    GroupAccepted,
    GroupDone,
    GroupQuery,
    GroupReport,
    SubmitGroup,
    TaskGroup,
    TaskStatus,
    TaskStatusUpdate,
)
from .manage import add_actions
from .manager import TaskManager
from .playground import TaskPlayGround
from .stats import TaskStatistics

__all__ = ["add_command"]


def add_command(sub: Any) -> None:
    """Add ``tasks run`` to the ``ceylon`` command line."""
    tasks = sub.add_parser("tasks", help="run task groups (the task-processor plugin)")
    actions = tasks.add_subparsers(dest="tasks_command", metavar="ACTION", required=True)
    run = actions.add_parser("run", help="run the groups a factory function returns")
    run.add_argument("factory", metavar="MODULE:FACTORY", help="returns TaskGroup(s)")
    run.add_argument("--workers", type=int, default=2, help="local workers per role (2)")
    run.add_argument("--max-concurrent", type=int, default=4, help="tasks per worker (4)")
    run.add_argument(
        "--agent",
        default="ceylon.task:TaskExecutionAgent",
        metavar="MODULE:CLASS",
        help="worker class for local workers (default: TaskExecutionAgent)",
    )
    run.add_argument("--remote", type=int, default=0, metavar="N",
                     help="start no workers; wait for N remote ones")  # fmt: skip
    run.add_argument("--connect", metavar="HOST:PORT", type=address,
                     help="submit to a running playground hosting --plugin tasks")  # fmt: skip
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=port_number, default=0,
                     help="port of the hosted playground (0)")  # fmt: skip
    run.add_argument("--timeout", type=float, default=3600.0, metavar="S",
                     help="give up after S seconds (exit 1)")  # fmt: skip
    run.add_argument("--json", action="store_true",
                     help="print each task's status, result and error as JSON")  # fmt: skip
    run.add_argument("--out", metavar="FILE",
                     help="write that JSON to FILE instead")  # fmt: skip
    run.add_argument("--resume", action="store_true",
                     help="with --connect: groups the playground already has under the same "
                     "names are followed, not submitted again")  # fmt: skip
    _add_security(run, server=True)
    run.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    run.set_defaults(run=run_tasks)
    add_actions(actions)


async def _groups_from(spec: str) -> list[TaskGroup]:
    factory: Callable[[], Any] = load_object(spec)
    made = factory()
    if inspect.isawaitable(made):
        made = await made
    if isinstance(made, TaskGroup):
        return [made]
    groups = list(made) if isinstance(made, list | tuple) else []
    if not groups or not all(isinstance(g, TaskGroup) for g in groups):
        shown = repr(made) if len(repr(made)) <= 60 else f"a {type(made).__name__}"
        raise UsageError(f"{spec} must return a TaskGroup or a list of them, got {shown}")
    return groups


def _report(args: argparse.Namespace, manager: TaskManager) -> None:
    """--json / --out: every task's status, result and error."""
    if not (args.json or args.out):
        return
    tasks = []
    for task_id, task in manager.tasks.items():
        status = (
            "completed" if task_id in manager.completed_tasks
            else "failed" if task_id in manager.failed_tasks
            else task.status.value
        )  # fmt: skip
        tasks.append({
            "task_id": task_id, "name": task.name, "group_id": task.group_id,
            "status": status, "worker": task.assigned_to,
            "result": task.result if status == "completed" else None,
            "error": manager.errors.get(task_id),
        })  # fmt: skip
    text = json.dumps({"tasks": tasks}, default=_plain)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as out:
            out.write(text + "\n")
    else:
        print(text, flush=True)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return repr(value)


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>8.1f} tasks/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def _table(stats: TaskStatistics, groups: list[TaskGroup]) -> Table:
    table = Table(title="Task statistics")
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        ("tasks", f"{stats.total:,}"),
        ("completed", f"{stats.completed:,}"),
        ("failed", f"{stats.failed:,}"),
        ("average duration", f"{stats.average_duration:.3f} s"),
        ("p95 duration", f"{stats.p95_duration:.3f} s"),
        ("throughput", f"{stats.throughput:,.1f} tasks/s"),
        ("wall time", f"{stats.wall_time:.2f} s"),
    ]
    rows += [(f"worker {w}", f"{n:,}") for w, n in sorted(stats.per_worker.items())]
    for group in groups:
        goal = f", goal {group.goal.status.value}" if group.goal is not None else ""
        rows.append((f"group {group.name}", f"{group.status.value}{goal}"))
    for name, value in rows:
        table.add_row(name, value)
    return table


async def _follow(manager: TaskManager, total: int, done: Callable[[], bool], console: Console,
                  timeout: float) -> None:  # fmt: skip
    started = time.monotonic()
    with _progress(console) as progress:
        bar = progress.add_task("tasks", total=total, rate=0.0)
        async with asyncio.timeout(timeout):
            while not done():
                ended = len(manager.completed_tasks) + len(manager.failed_tasks)
                rate = len(manager.completed_tasks) / max(time.monotonic() - started, 1e-9)
                progress.update(bar, completed=ended, rate=rate)
                await asyncio.sleep(0.1)  # refresh period of the progress bar
        ended = len(manager.completed_tasks) + len(manager.failed_tasks)
        progress.update(bar, completed=ended)


async def _run_hosted(
    args: argparse.Namespace, groups: list[TaskGroup], console: Console, run: _Run
) -> int:
    playground = TaskPlayGround(
        name="tasks", port=args.port, host=args.host, workspace=args.workspace,
        token=args.token, ssl=_server_tls(args),
    )  # fmt: skip
    await start_listening(playground)
    print(f"listening on {playground.address}", flush=True)
    roles = sorted({t.required_role for g in groups for t in g.subtasks})
    children: list[Process] = []
    try:
        if args.remote:
            console.print(f"waiting for {args.remote} remote worker(s) on {playground.address}")
            await playground.wait_for_agents(count=args.remote, timeout=args.timeout)
        else:
            for role, n in itertools.product(roles, range(args.workers)):
                command = python_command(
                    "-m", "ceylon", "worker", "--connect", playground.address,
                    "--agent", args.agent, "--role", role, "--name", f"{role}-{n}",
                    "--option", f"max_concurrent_tasks={args.max_concurrent}",
                )  # fmt: skip
                command += ["--workspace", args.workspace]
                if args.token:
                    command += ["--token", args.token]
                if args.tls_ca:
                    command += ["--tls-ca", args.tls_ca]
                children.append(Process(command))
            await playground.wait_for_agents(count=len(children), timeout=min(args.timeout, 60.0))
        await playground.assign_task_groups(groups)
        manager = run.manager = playground.task_manager
        await _follow(manager, len(manager.tasks), manager.all_done, console, args.timeout)
        console.print(_table(playground.statistics(), groups))
        _report(args, manager)
        return 0 if not manager.failed_tasks else EXIT_FAILED
    finally:
        await playground.finish()
        for child in children:
            child.stop()


class _Submitter(BaseAgent):
    """Submits groups to a remote task playground and mirrors their progress."""

    def __init__(self, manager: TaskManager) -> None:
        super().__init__(f"task-runner-{id(self):x}", role="task-runner")
        self.manager = manager
        self.groups_done: set[str] = set()
        self.changed = asyncio.Event()
        self.submitted: list[str] = []  # group ids, to re-attach to after a reconnect
        self._attaching: set[asyncio.Task[None]] = set()
        #: set at each reconnect; a submission that lost its playground waits for it
        self.restored = asyncio.Event()
        self.lost_submit = False

    @on(GroupAccepted)
    async def _accepted(self, reply: GroupAccepted) -> None:
        pass  # the reply to an ask(): handled here so that it is registered

    @on(GroupReport)
    async def _report(self, reply: GroupReport) -> None:
        pass  # likewise

    def receive_link_restored(self) -> None:
        super().receive_link_restored()
        self.restored.set()
        task = asyncio.get_running_loop().create_task(self._attach())
        self._attaching.add(task)
        task.add_done_callback(self._attaching.discard)

    async def _attach(self) -> None:
        """Reconnected (the playground restarted, say): follow our groups again, and
        catch up on what ended meanwhile."""
        playground = self.connected_playground
        if playground is None:
            return
        for group_id in self.submitted:
            try:
                report = await self.ask(playground.id, GroupQuery(0, group_id, tasks=True,
                                                                  watch=True))  # fmt: skip
            except Exception as exc:  # it goes again at the next reconnect
                self._log.warning("could not re-attach to group {}: {}", group_id, exc)
                return
            self.apply(report)
        self._log.info("re-attached to {} group(s)", len(self.submitted))

    def apply(self, report: GroupReport) -> None:
        """Mirror what a `GroupReport` says of tasks and groups."""
        for update in report.tasks:
            self._mirror(update)
        for group in report.groups:
            if group.status in (TaskStatus.COMPLETED, TaskStatus.FAILED):
                self.groups_done.add(group.group_id)
        self.changed.set()

    @on(TaskStatusUpdate)
    async def _update(self, update: TaskStatusUpdate) -> None:
        self._mirror(update)
        self.changed.set()

    def _mirror(self, update: TaskStatusUpdate) -> None:
        if update.task_id not in self.manager.tasks:
            return
        if update.status is TaskStatus.COMPLETED:
            self.manager.started(update.task_id, update.worker)
            self.manager.completed(update.task_id, update.result, update.start_time,
                                   update.end_time)  # fmt: skip
        elif update.status is TaskStatus.FAILED:
            self.manager.failed(update.task_id, update.error or "failed")

    @on(GroupDone)
    async def _group_done(self, done: GroupDone) -> None:
        self.groups_done.add(done.group_id)
        self.changed.set()


async def _run_remote(
    args: argparse.Namespace, groups: list[TaskGroup], console: Console, run: _Run
) -> int:
    manager = run.manager = TaskManager()
    runner = _Submitter(manager)
    deadline = time.monotonic() + args.timeout  # the only deadline of the run
    settings = Settings(workspace=args.workspace, token=args.token, ssl=_client_tls(args),
                        reconnect=True)  # fmt: skip
    await connect_agent(runner, args, settings)
    try:
        resumed = await _resume(runner, groups, _left(deadline)) if args.resume else []
        manager.add_groups(groups)  # mirrored here: goals and progress are evaluated locally
        for report in resumed:
            runner.apply(report)
        if resumed:
            console.print(f"resumed {len(resumed)} group(s) the playground already has")
        resumed_ids = {r.groups[0].group_id for r in resumed}
        for request, group in enumerate(_dependencies_first(groups), 1):
            if group.task_id in resumed_ids:
                runner.submitted.append(group.task_id)
                continue
            submit = SubmitGroup(
                request, group.name, group.description, group.subtasks, group.dependencies,
                group.depends_on, group.priority, group.task_id, group.task_timeout,
            )  # fmt: skip
            try:
                reply = await _submit(runner, submit, deadline)
            except RemoteHandlerError as exc:
                console.print(f"[red]refused: group {group.name!r}: {exc.message}")
                return EXIT_FAILED
            except AskTimeout:
                raise TimeoutError from None
            if reply.error:
                console.print(f"[red]refused: group {group.name!r}: {reply.error}")
                return EXIT_FAILED
            runner.submitted.append(group.task_id)
        await _follow(manager, len(manager.tasks), manager.all_done, console, _left(deadline))
        stats = manager_statistics(manager)
        console.print(_table(stats, groups))
        _report(args, manager)
        return 0 if not manager.failed_tasks else EXIT_FAILED
    finally:
        await runner.stop()


async def _submit(runner: _Submitter, submit: SubmitGroup, deadline: float) -> GroupAccepted:
    """Submit a group; if the playground goes away meanwhile, wait for it (or the one
    that takes over), then follow the group if it was accepted before, else submit it
    again. Only `deadline` limits the wait.

    Raises:
        RemoteHandlerError, AskTimeout: from `ask`.
    """
    while True:
        playground = runner.connected_playground
        if playground is None:
            async with asyncio.timeout(_left(deadline)):
                await runner.restored.wait()
            continue
        try:
            if runner.lost_submit:  # it may have got there: not twice
                query = GroupQuery(0, submit.group_id, tasks=True, watch=True)
                report = await runner.ask(playground.id, query, timeout=_left(deadline))
                if isinstance(report, GroupReport) and report.groups:
                    runner.apply(report)
                    return GroupAccepted(submit.request, submit.group_id)
            runner.lost_submit = False
            reply = await runner.ask(playground.id, submit, timeout=_left(deadline))
            assert isinstance(reply, GroupAccepted)
            return reply
        except (NotConnectedError, AgentNotFoundError) as exc:
            runner.lost_submit = True
            runner.restored.clear()
            logger.info("the playground went away while the group was submitted ({}); "
                        "waiting for it", exc)  # fmt: skip


async def _resume(runner: _Submitter, groups: list[TaskGroup], timeout: float) -> list[GroupReport]:
    """``--resume``: adopt the groups the playground already has under the same names (their
    ids, and their tasks' ids matched by name, in order), so that nothing done is redone."""
    playground = runner.connected_playground
    assert playground is not None
    reports = []
    for group in groups:
        query = GroupQuery(0, name=group.name, tasks=True, watch=True)
        report = await runner.ask(playground.id, query, timeout=timeout)
        live = [g for g in report.groups if g.status is not TaskStatus.FAILED]
        if report.error or len(live) != 1:
            continue  # not there (or ambiguous, or failed: run it again)
        remote = live[0]
        by_name: dict[str, list[str]] = {}
        for update in report.tasks:
            by_name.setdefault(report.names.get(update.task_id, ""), []).append(update.task_id)
        old_ids = {t.task_id: t for t in group.subtasks}
        for task in group.subtasks:
            ids = by_name.get(task.name)
            if not ids:
                break
            task.task_id = ids.pop(0)
            task.group_id = remote.group_id
        else:
            renamed = {old: t.task_id for old, t in old_ids.items()}
            group.dependencies = {renamed.get(k, k): [renamed.get(d, d) for d in v]
                                  for k, v in group.dependencies.items()}  # fmt: skip
            group.task_id = remote.group_id
            report.tasks = [u for u in report.tasks if u.task_id in renamed.values()]
            report.groups = [remote]
            reports.append(report)
    return reports


def _dependencies_first(groups: list[TaskGroup]) -> list[TaskGroup]:
    """`groups` in an order where each comes after the groups it depends on (the
    playground refuses a group naming one it does not know yet); a cycle keeps the
    given order, for the playground to refuse with its reason."""
    ordered: list[TaskGroup] = []
    placed: set[str] = set()
    ids = {g.task_id for g in groups}
    left = list(groups)
    while left:
        ready = [g for g in left if all(d in placed or d not in ids for d in g.depends_on)]
        if not ready:
            return ordered + left
        for group in ready:
            ordered.append(group)
            placed.add(group.task_id)
            left.remove(group)
    return ordered


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def manager_statistics(manager: TaskManager) -> TaskStatistics:
    from .stats import summarize

    return summarize(manager.tasks.values(), manager.completed_tasks.values(),
                     len(manager.failed_tasks))  # fmt: skip


@dataclasses.dataclass
class _Run:
    """What a run has to show when a signal ends it."""

    manager: TaskManager | None = None


async def _main(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    groups = await _groups_from(args.factory)
    run = _Run()
    main = (
        _run_remote(args, groups, console, run)
        if args.connect or args.nats
        else _run_hosted(args, groups, console, run)
    )
    code, signum = await run_interruptibly(main)  # children are stopped as it unwinds
    if signum is None:
        assert code is not None
        return code
    manager = run.manager
    where = ""
    if manager is not None:
        ended = len(manager.completed_tasks) + len(manager.failed_tasks)
        where = f" at {ended}/{len(manager.tasks)} tasks ({len(manager.failed_tasks)} failed)"
    print(f"interrupted by {signal.Signals(signum).name}{where}", file=sys.stderr, flush=True)
    return interrupted_exit(signum)


def run_tasks(args: argparse.Namespace) -> int:
    try:
        return transport.run(_main(args))
    except TimeoutError:
        logger.error("the run did not finish within {} s", args.timeout)
        return EXIT_FAILED
    except (ValueError, ImportError, AttributeError) as exc:
        raise UsageError(str(exc)) from None
