"""``ceylon status``: a live view of a running playground (agents, tasks, throughput).

It connects as an observer (outside the directory: agents do not hear of it), asks
for a `PlaygroundStatus` every ``--interval`` seconds and redraws a table; ``--once``
prints one view and exits, ``--json`` prints one JSON object per line instead.
Rates are over the last interval (over the playground's uptime for the first view).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
from collections import Counter
from typing import Any

from loguru import logger
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

import transport

from .base.agent import BaseAgent
from .cli import (
    EXIT_FAILED,
    EXIT_USAGE,
    UsageError,
    _add_security,
    _client_tls,
    _until_signalled,
    address,
    connect_agent,
    where,
)
from .config import DEFAULT_PORT, Settings
from .errors import CeylonError, NotConnectedError
from .peer import PeerMode
from .system import PlaygroundStatus

__all__ = ["Observer", "Rates", "add_command", "as_json", "render"]


def add_command(sub: Any) -> None:
    """Add ``status`` to the ``ceylon`` command line."""
    status = sub.add_parser(
        "status", help="show a running playground: agents, tasks, throughput (live)"
    )
    status.add_argument(
        "--connect",
        type=address,
        default=f"127.0.0.1:{DEFAULT_PORT}",
        metavar="HOST:PORT",
        help=f"the playground (default 127.0.0.1:{DEFAULT_PORT})",
    )
    status.add_argument(
        "--interval", type=float, default=1.0, metavar="S", help="seconds between refreshes (1)"
    )
    status.add_argument("--once", action="store_true", help="print one view and exit")
    status.add_argument("--json", action="store_true", help="JSON lines instead of tables")
    status.add_argument(
        "--timeout", type=float, default=10.0, metavar="S", help="wait for answers (10)"
    )
    _add_security(status, server=False)
    status.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    status.set_defaults(run=run_status)


class Observer(BaseAgent):
    """Asks the playground questions; not in its directory, nobody hears of it."""

    observer = True

    def __init__(self, name: str, mode: PeerMode = PeerMode.CLIENT) -> None:
        super().__init__(name, mode, role="observer")


class Rates:
    """Per-second rates of the playground's counters between two views."""

    def __init__(self) -> None:
        self._last: tuple[float, int, int] = (0.0, 0, 0)  # uptime, routed, tasks completed

    def update(self, status: PlaygroundStatus) -> tuple[float, float | None]:
        """Messages/s and completed tasks/s (None without the tasks plugin) since last time."""
        then, routed, completed = self._last
        tasks = status.plugins.get("tasks")
        done = int(tasks.get("completed", 0)) if tasks is not None else 0
        elapsed = status.uptime - then
        self._last = (status.uptime, status.messages_routed, done)
        if elapsed <= 0:
            return 0.0, None if tasks is None else 0.0
        messages = (status.messages_routed - routed) / elapsed
        return messages, None if tasks is None else (done - completed) / elapsed


def as_json(status: PlaygroundStatus, rates: tuple[float, float | None], me: str) -> str:
    """One view as a JSON line."""
    agents = [a for a in status.agents if a.id != me]
    return json.dumps(
        {
            "playground": {"name": status.playground.name, "id": status.playground.id},
            "uptime": round(status.uptime, 3),
            "agents": [{"name": a.name, "role": a.role, "id": a.id} for a in agents],
            "messages_routed": status.messages_routed,
            "messages_per_s": round(rates[0], 1),
            "tasks_per_s": None if rates[1] is None else round(rates[1], 1),
            "plugins": status.plugins,
            "drops": status.drops,
        },
        default=str,  # figures may be datetimes, sets...: shown as text
    )


def render(
    status: PlaygroundStatus, rates: tuple[float, float | None], address: str, me: str
) -> Group:
    """One view as rich tables: a summary, agents by role, each plugin's figures."""
    agents = [a for a in status.agents if a.id != me]
    summary = Table.grid(padding=(0, 2))
    summary.add_row("playground", f"{status.playground.name} at {address}")
    summary.add_row("up", _duration(status.uptime))
    summary.add_row("agents", str(len(agents)))
    summary.add_row("messages routed", f"{status.messages_routed:,} ({rates[0]:,.0f}/s)")
    if rates[1] is not None:
        summary.add_row("tasks completed", f"{rates[1]:,.0f}/s")
    for reason, count in sorted(status.drops.items()):
        summary.add_row(f"dropped: {reason}", f"{count:,}")
    parts: list[Any] = [summary]
    by_role = Counter(a.role for a in agents)
    if by_role:
        roles = Table(title="agents by role", title_justify="left")
        roles.add_column("role")
        roles.add_column("count", justify="right")
        roles.add_column("names")
        for role, count in sorted(by_role.items()):
            names = sorted(a.name for a in agents if a.role == role)
            shown = ", ".join(names[:5]) + (f", ... (+{len(names) - 5})" if len(names) > 5 else "")
            roles.add_row(role, str(count), shown)
        parts.append(roles)
    for name, figures in sorted(status.plugins.items()):
        table = Table(title=f"plugin {name}", title_justify="left")
        table.add_column("figure")
        table.add_column("value", justify="right")
        for key, value in figures.items():
            table.add_row(str(key), f"{value:,}" if isinstance(value, int) else str(value))
        parts.append(table)
    return Group(*parts)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


async def _status(args: argparse.Namespace) -> int:
    if args.interval <= 0:
        raise UsageError("--interval must be > 0")
    observer = Observer(f"status-{os.getpid()}-{secrets.token_hex(3)}", PeerMode.CLIENT)
    settings = Settings(workspace=args.workspace, token=args.token, ssl=_client_tls(args))
    try:
        async with asyncio.timeout(args.timeout):
            await connect_agent(observer, args, settings)
    except transport.HandshakeError as exc:
        print(f"refused: {exc.reason}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except (OSError, TimeoutError, transport.ConnectionClosed, NotConnectedError) as exc:
        print(f"cannot reach the playground at {where(args)}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    try:
        watch = asyncio.ensure_future(_watch(observer, args))
        await _until_signalled(watch)
        if not watch.done():
            watch.cancel()
            return 0
        return watch.result()
    finally:
        await observer.stop()


async def _watch(observer: BaseAgent, args: argparse.Namespace) -> int:
    rates = Rates()
    console = Console()
    live: Live | None = None
    try:
        while True:
            try:
                status = await observer.playground_status(args.timeout)
            except (TimeoutError, transport.TransportError, CeylonError) as exc:
                print(f"the playground did not answer: {exc}", file=sys.stderr, flush=True)
                return EXIT_FAILED
            figures = rates.update(status)
            if args.json:
                print(as_json(status, figures, observer.id), flush=True)
            else:
                view = render(status, figures, where(args), observer.id)
                if args.once:
                    console.print(view)
                elif live is None:
                    live = Live(view, console=console, auto_refresh=False)
                    live.start(refresh=True)
                else:
                    live.update(view, refresh=True)
            if args.once:
                return 0
            await asyncio.sleep(args.interval)  # the refresh period, not synchronisation
    finally:
        if live is not None:
            live.stop()


def run_status(args: argparse.Namespace) -> int:
    logger.debug("status of {}", where(args))
    return transport.run(_status(args))
