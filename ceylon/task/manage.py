"""``ceylon tasks list|show|cancel --connect HOST:PORT``: the groups of a running playground."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

import transport

from ..base.agent import BaseAgent
from ..cli import EXIT_FAILED, EXIT_USAGE, _add_security, address, connect_agent, where
from ..config import DEFAULT_PORT
from ..errors import CeylonError
from ..handlers import on
from .data import CancelGroup, GroupQuery, GroupReport, GroupSummary

__all__ = ["add_actions"]


def add_actions(actions: Any) -> None:
    """Add ``list``, ``show`` and ``cancel`` to ``ceylon tasks``."""
    for name, help_text in (
        ("list", "list the task groups of a running playground, with their progress"),
        ("show", "show one group's tasks, their status, result and error"),
        ("cancel", "cancel a group: its unfinished tasks fail, and what depends on them"),
    ):
        action = actions.add_parser(name, help=help_text)
        if name != "list":
            action.add_argument("group", metavar="GROUP", help="the group's id (or its name)")
        action.add_argument("--connect", metavar="HOST:PORT", type=address,
                            default=f"127.0.0.1:{DEFAULT_PORT}",
                            help=f"the playground (default 127.0.0.1:{DEFAULT_PORT})")  # fmt: skip
        action.add_argument("--json", action="store_true", help="print JSON instead of tables")
        action.add_argument("--timeout", type=float, default=10.0, metavar="S",
                            help="wait for the answer (10)")  # fmt: skip
        _add_security(action, server=False)
        action.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
        action.set_defaults(run=_run)


class _Asker(BaseAgent):
    @on(GroupReport)
    async def _report(self, report: GroupReport) -> None:
        pass  # the reply to an ask()


def _run(args: argparse.Namespace) -> int:
    try:
        return transport.run(_main(args))
    except transport.HandshakeError as exc:
        print(f"refused: {exc.reason}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except (OSError, transport.TransportError, CeylonError) as exc:
        print(f"error: {where(args)}: {exc}", file=sys.stderr, flush=True)
        return EXIT_FAILED


async def _main(args: argparse.Namespace) -> int:
    asker = _Asker(f"tasks-{args.tasks_command}", role="task-admin")
    await connect_agent(asker, args)
    try:
        playground = asker.connected_playground
        assert playground is not None
        report = await asker.ask(playground.id, _request(args), timeout=args.timeout)
    finally:
        await asker.stop()
    assert isinstance(report, GroupReport)
    if report.error:
        print(f"error: {report.error}", flush=True)
        return EXIT_FAILED
    _print(args, report)
    return 0


def _request(args: argparse.Namespace) -> GroupQuery | CancelGroup:
    if args.tasks_command == "list":
        return GroupQuery(0)
    if args.tasks_command == "show":
        return GroupQuery(0, group_id=args.group, tasks=True)
    return CancelGroup(0, args.group)


def _print(args: argparse.Namespace, report: GroupReport) -> None:
    if args.json:
        print(json.dumps(_as_json(report), default=str), flush=True)
        return
    console = Console()
    console.print(_groups_table(report.groups))
    if report.tasks:
        table = Table("task", "name", "status", "worker", "result / error")
        for update in report.tasks:
            outcome = update.error if update.error else update.result
            table.add_row(update.task_id, report.names.get(update.task_id, ""),
                          update.status.value, update.worker,
                          "" if outcome is None else str(outcome)[:80])  # fmt: skip
        console.print(table)


def _groups_table(groups: list[GroupSummary]) -> Table:
    table = Table("group", "name", "status", "done", "failed", "total")
    for g in groups:
        table.add_row(g.group_id, g.name, g.status.value, str(g.completed), str(g.failed),
                      str(g.total))  # fmt: skip
    return table


def _as_json(report: GroupReport) -> dict[str, Any]:
    groups = [
        {"group_id": g.group_id, "name": g.name, "status": g.status.value,
         "completed": g.completed, "failed": g.failed, "total": g.total}
        for g in report.groups
    ]  # fmt: skip
    tasks = [
        {"task_id": u.task_id, "name": report.names.get(u.task_id, ""),
         "status": u.status.value, "worker": u.worker, "result": u.result, "error": u.error}
        for u in report.tasks
    ]  # fmt: skip
    return {"groups": groups, "tasks": tasks} if tasks else {"groups": groups}
