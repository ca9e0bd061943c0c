"""``ceylon meetings solve INSTANCE.json``: schedule an instance over the protocol.

It starts a playground and one participant agent per participant (each over TCP), lets
the playground learn everyone's calendar from the agents, solve and book, and prints the
solution JSON of ``shared/meetings/README.md`` (or writes it with ``--out``). Progress
goes to stderr. A malformed instance is refused with the bad field named (exit 2) and
nothing is written.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import threading
import time
from typing import Any

from loguru import logger

import transport

from ..base.agent import BaseAgent
from ..cli import (
    UsageError,
    _add_security,
    address,
    connect_agent,
    interrupted_exit,
    run_interruptibly,
    where,
)
from ..errors import RemoteHandlerError
from ..handlers import on
from .data import MeetingOutput, PlanRequest, PlanResult
from .instance import FORMAT_HELP, Instance, InstanceError, parse_instance
from .participant import ParticipantAgent
from .playground import SchedulingPlayground
from .solver import DEFAULT_TIME_LIMIT

#: Seconds after SIGINT/SIGTERM for the best schedule so far to be booked and written.
STOP_GRACE = 0.9

__all__ = ["add_command"]


def add_command(sub: Any) -> None:
    """Add ``meetings solve`` to the ``ceylon`` command line."""
    meetings = sub.add_parser("meetings", help="schedule meetings (the meeting plugin)")
    actions = meetings.add_subparsers(dest="meetings_command", metavar="ACTION", required=True)
    solve = actions.add_parser(
        "solve",
        help="solve an instance file over the protocol",
        epilog=FORMAT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    solve.add_argument("instance", metavar="INSTANCE.json")
    solve.add_argument("--out", metavar="FILE", help="write the solution here (not stdout)")
    solve.add_argument("--time-limit", type=float, default=DEFAULT_TIME_LIMIT, metavar="S",
                       help=f"seconds for the solver to improve the schedule "
                       f"({DEFAULT_TIME_LIMIT})")  # fmt: skip
    solve.add_argument(
        "--connect",
        type=address,
        metavar="HOST:PORT",
        help="plan on a running `ceylon playground --plugin meetings` with the participant "
        "agents connected to it (their calendars, not the instance's, are used)",
    )
    _add_security(solve, server=False)
    solve.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    solve.set_defaults(run=run_solve)


def _entries(instance: Instance, outputs: dict[str, MeetingOutput]) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for meeting in instance.meetings:
        out = outputs[meeting.name]
        if out.scheduled and out.time_slot is not None:
            entries.append(
                {
                    "meeting": meeting.name,
                    "scheduled": True,
                    "date": out.time_slot.date,
                    "start": out.time_slot.start_time,
                    "end": out.time_slot.end_time,
                    "participants": sorted(out.participants),
                }
            )
        else:
            entries.append({"meeting": meeting.name, "scheduled": False, "reason": out.error})
    return entries


async def _solve(
    instance: Instance, time_limit: float, stopping: threading.Event, started: float
) -> dict[str, Any]:
    def progress(line: str) -> None:
        print(f"[{time.monotonic() - started:6.2f} s] {line}", file=sys.stderr, flush=True)

    playground = SchedulingPlayground(
        name="meeting_scheduler",
        port=0,
        constraints=instance.constraints,
        time_limit=time_limit,
        progress=progress,
    )
    plugin = playground.meeting_plugin
    plugin.stopping = stopping
    participants = [ParticipantAgent(n, slots) for n, slots in instance.participants.items()]
    progress(f"{instance.name}: {len(participants)} participant agents, "
             f"{len(instance.meetings)} meetings")  # fmt: skip
    try:
        outputs = await playground.schedule_meetings(instance.meetings, participants)
    except asyncio.CancelledError:
        # Cut short while the agents were leaving: the schedule, if there is one, stands.
        if plugin.last_outputs is None:
            raise
        outputs = plugin.last_outputs
    elapsed = time.monotonic() - started
    progress(f"done in {elapsed:.2f} s")
    return _solution(instance, outputs, elapsed)


class _Planner(BaseAgent):
    """Asks a remote meeting plugin to plan (it handles the reply type, so it is known)."""

    @on(PlanResult)
    async def _result(self, result: PlanResult) -> None:
        pass  # the reply to an ask()


async def _solve_remote(
    args: argparse.Namespace, instance: Instance, started: float
) -> dict[str, Any]:
    """Plan the instance's meetings on the playground at ``--connect``."""

    def progress(line: str) -> None:
        print(f"[{time.monotonic() - started:6.2f} s] {line}", file=sys.stderr, flush=True)

    asker = _Planner(f"meetings-solve-{os.getpid()}", role="planner")
    await connect_agent(asker, args)
    try:
        playground = asker.connected_playground
        assert playground is not None
        progress(f"{instance.name}: asking {where(args)} to plan {len(instance.meetings)} "
                 f"meetings with the participants connected there")  # fmt: skip
        request = PlanRequest(list(instance.meetings), instance.constraints, args.time_limit)
        try:
            result = await asker.ask(playground.id, request, timeout=args.time_limit + 120)
        except RemoteHandlerError as exc:
            raise UsageError(f"{where(args)} cannot plan meetings: {exc.message} "
                             f"(is it started with --plugin meetings?)") from None  # fmt: skip
    finally:
        await asker.stop()
    outputs = {o.name: o for o in result.outputs}
    elapsed = time.monotonic() - started
    progress(f"done in {elapsed:.2f} s")
    return _solution(instance, outputs, elapsed)


def _solution(
    instance: Instance, outputs: dict[str, MeetingOutput], elapsed: float
) -> dict[str, Any]:
    return {
        "schedule": _entries(instance, outputs),
        "instance": instance.name,
        "solver": "ceylon",
        "seconds": round(elapsed, 3),
    }


def run_solve(args: argparse.Namespace) -> int:
    if not args.verbose:  # a thousand joins and leaves are not news: progress lines are
        logger.remove()
        logger.add(sys.stderr, level="WARNING", format="{level}: {message}", diagnose=False)
    try:
        with open(args.instance) as file:
            data = json.load(file)
        instance = parse_instance(data)
    except OSError as exc:
        print(f"error: cannot read {args.instance}: {exc.strerror}", file=sys.stderr)
        return 2
    except json.JSONDecodeError as exc:
        print(f"error: {args.instance} is not JSON: {exc}", file=sys.stderr)
        return 2
    except InstanceError as exc:
        print(f"error: {args.instance}: {exc}", file=sys.stderr)
        return 2
    # The solver runs in a thread and polls `stopping`: a signal ends the search with
    # the best valid schedule so far, which is booked and written; if that takes longer
    # than the grace period, the run is cut and nothing is written.
    stopping = threading.Event()
    if args.connect or args.nats:
        main = _solve_remote(args, instance, time.monotonic())
        solution, signum = transport.run(run_interruptibly(main))
    else:
        main = _solve(instance, args.time_limit, stopping, time.monotonic())
        solution, signum = transport.run(
            run_interruptibly(main, on_signal=lambda _: stopping.set(), grace=STOP_GRACE)
        )
    if signum is not None:
        name = signal.Signals(signum).name
        if solution is None:
            print(f"interrupted by {name} before a schedule was found; nothing written",
                  file=sys.stderr, flush=True)  # fmt: skip
            return interrupted_exit(signum)
        if not args.out:
            print(f"interrupted by {name}; without --out nothing is written",
                  file=sys.stderr, flush=True)  # fmt: skip
            return interrupted_exit(signum)
    assert solution is not None
    text = json.dumps(solution, indent=1)
    if args.out:
        tmp = f"{args.out}.tmp"
        with open(tmp, "w") as file:
            file.write(text + "\n")
        os.replace(tmp, args.out)  # nothing partial is ever left at --out
    else:
        print(text)
    if signum is not None:
        scheduled = sum(entry["scheduled"] for entry in solution["schedule"])
        print(f"interrupted by {signal.Signals(signum).name}: wrote the best valid schedule "
              f"found so far ({scheduled} meetings) to {args.out}", file=sys.stderr,
              flush=True)  # fmt: skip
        return interrupted_exit(signum)
    return 0
