"""Small things a user hits: EncodeError in the CeylonError tree, cleanup(), types for mypy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import transport
from ceylon import BaseAgent, BasePlayGround, CeylonError, EncodeError

from ..conftest import BEAT, seconds


class Unencodable:
    """Neither a dataclass nor an enum nor a native value."""


async def test_an_unencodable_message_is_a_ceylon_error() -> None:
    playground = BasePlayGround(port=0, **BEAT)
    agent = BaseAgent("sender")
    async with playground.play(workers=[agent]):
        for send in (
            lambda: agent.broadcast_message(Unencodable()),
            lambda: agent.send_message("playground", Unencodable()),
            lambda: agent.ask("playground", Unencodable()),
        ):
            with pytest.raises(CeylonError) as raised:
                await send()
            error = raised.value
            assert isinstance(error, EncodeError) and isinstance(error, transport.EncodeError)
            assert isinstance(error, TypeError) and "Unencodable" in str(error)


async def test_cleanup_inside_play_as_the_tutorial_writes_it() -> None:
    playground = BasePlayGround(port=0, **BEAT)
    async with playground.play(workers=[BaseAgent("w")]) as active_playground:
        try:
            assert len(await active_playground.get_connected_agents()) == 1
        finally:
            await active_playground.cleanup()
        assert not active_playground.started  # cleanup() finished it; play() then too
    assert not playground.started


def test_mypy_finds_ceylon_in_a_users_project(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text(
        "from ceylon import BaseAgent, on\n"
        "from ceylon.task import TaskMessage\n\n\n"
        "class Mine(BaseAgent):\n"
        "    @on(TaskMessage)\n"
        "    async def take(self, task: TaskMessage) -> None:\n"
        "        self.last: str = task.name\n\n\n"
        "wrong: int = Mine('m').name\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(app)],
        cwd=tmp_path, capture_output=True, text=True, timeout=seconds(120),
    )  # fmt: skip
    # it found ceylon's types: the one mistake is reported, nothing is "missing"
    assert "import-not-found" not in done.stdout, done.stdout
    assert done.stdout.count("error:") == 1 and "app.py:11" in done.stdout, done.stdout
