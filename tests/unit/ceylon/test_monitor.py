"""What ``ceylon status`` shows, from a `PlaygroundStatus` (no sockets)."""

from __future__ import annotations

import datetime
import json

from rich.console import Console

from ceylon import AgentDetail
from ceylon.monitor import Rates, as_json, render
from ceylon.system import PlaygroundStatus

PLAYGROUND = AgentDetail("pg", "hub", "playground")
ME = AgentDetail("me", "status-1", "observer")


def status(uptime: float, routed: int, completed: int) -> PlaygroundStatus:
    agents = [AgentDetail(f"w{i}", f"w{i}", "worker") for i in range(7)] + [ME]
    when = datetime.datetime(2026, 11, 23, 9, 0)
    plugins = {"tasks": {"completed": completed, "since": when}}
    return PlaygroundStatus(0, PLAYGROUND, uptime, agents, routed, plugins)


def test_rates_are_over_the_last_interval_and_the_first_over_the_uptime() -> None:
    rates = Rates()
    assert rates.update(status(10.0, 1000, 100)) == (100.0, 10.0)
    assert rates.update(status(12.0, 1400, 160)) == (200.0, 30.0)
    assert rates.update(status(12.0, 1400, 160)) == (0.0, 0.0)  # no time passed


def test_json_view_leaves_out_the_observer_and_shows_any_figure() -> None:
    view = json.loads(as_json(status(10.0, 1000, 100), (100.0, 10.0), ME.id))
    assert [a["name"] for a in view["agents"]] == [f"w{i}" for i in range(7)]
    assert view["plugins"]["tasks"] == {"completed": 100, "since": "2026-11-23 09:00:00"}
    assert (view["messages_per_s"], view["tasks_per_s"]) == (100.0, 10.0)


def test_table_view_groups_agents_by_role_and_shortens_long_lists() -> None:
    console = Console(width=100, record=True)
    console.print(render(status(75.0, 1000, 100), (100.0, 10.0), "127.0.0.1:1", ME.id))
    text = console.export_text()
    assert "hub at 127.0.0.1:1" in text and "1m15s" in text
    assert "w0, w1, w2, w3, w4, ... (+2)" in text
    assert "observer" not in text and "plugin tasks" in text
