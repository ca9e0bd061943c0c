"""Per-token permissions (``ceylon playground --auth FILE``), each allowed and refused.

One real playground process holds a permissions file of several tokens; agents in this
process, and ``ceylon worker``/``ceylon status`` processes, join it over TCP with one
token or another and try what their token does and does not allow.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from ceylon import (
    AgentDetail,
    BaseAgent,
    HandshakeError,
    PermissionDenied,
    on,
    on_connect,
)
from ceylon.scheduling import Meeting, ParticipantAgent, TimeSlot
from ceylon.scheduling.data import PlanRequest, PlanResult
from ceylon.task import (
    GroupAccepted,
    GroupDone,
    SubmitGroup,
    TaskMessage,
    TaskStatus,
    TaskStatusUpdate,
)

from ..conftest import BEAT_FLAGS, seconds, wait_until

ADMIN = "admin-token-0123456789"
WORKER = "worker-token-0123456789"
CLIENT = "client-token-0123456789"
PEOPLE = "people-token-0123456789"
GUEST = "guest-token-01234567890"
PLANNER = "planner-token-012345678"

AUTH = f"""
[[tokens]]
user = "admin"
token = "{ADMIN}"

[[tokens]]
user = "workers"
token = "{WORKER}"
names = ["worker-*"]
roles = ["processor"]
allow = ["serve_tasks"]
send = []

[[tokens]]
user = "clients"
token = "{CLIENT}"
names = ["client-*"]
roles = ["member"]
allow = ["submit_tasks"]
send = ["member"]

[[tokens]]
user = "people"
token = "{PEOPLE}"
names = ["p-*"]
roles = ["participant"]
allow = ["answer_meetings"]
send = []

[[tokens]]
user = "guests"
token = "{GUEST}"
names = ["g-*"]
allow = []
send = []

[[tokens]]
user = "planner"
token = "{PLANNER}"
names = ["planner"]
allow = ["plan_meetings"]
send = []
"""


@dataclasses.dataclass
class PermittedNote:
    text: str


class Member(BaseAgent):
    """Records what it receives and what the playground told it went nowhere."""

    def __init__(self, name: str, role: str = "member") -> None:
        super().__init__(name, role=role)
        self.notes: list[str] = []
        self.undelivered: list[tuple[str, str]] = []  # (tag, reason)
        self.done: dict[str, TaskStatus] = {}

    @on(PermittedNote)
    async def _note(self, note: PermittedNote) -> PermittedNote:
        self.notes.append(note.text)
        return PermittedNote(f"re: {note.text}")

    @on(GroupAccepted)
    async def _accepted(self, reply: GroupAccepted) -> None:
        pass

    @on(TaskStatusUpdate)
    async def _update(self, update: TaskStatusUpdate) -> None:
        pass

    @on(GroupDone)
    async def _done(self, done: GroupDone) -> None:
        self.done[done.group_id] = done.status

    @on(PlanResult)
    async def _plan(self, result: PlanResult) -> None:
        pass

    def receive_undeliverable(self, target: str, tag: str, reason: str) -> None:
        self.undelivered.append((tag, reason))
        super().receive_undeliverable(target, tag, reason)


class Watcher(Member):
    """Subscribes to joins and leaves (so it needs the query permission)."""

    @on_connect("*")
    async def _joined(self, topic: str, agent: AgentDetail) -> None:
        pass


@dataclasses.dataclass
class Hub:
    address: str
    spawn: Any
    agents: list[BaseAgent]

    async def join(self, agent: BaseAgent, token: str) -> BaseAgent:
        await agent.connect(self.address, token=token)
        self.agents.append(agent)
        return agent


@pytest_asyncio.fixture
async def hub(spawn: Any, tmp_path: Path) -> AsyncIterator[Hub]:
    auth = tmp_path / "auth.toml"
    auth.write_text(AUTH)
    cli = spawn("-m", "ceylon", "playground", "--port", "0", "--auth", str(auth),
                "--plugin", "tasks", "--plugin", "meetings", "--state", ":memory:",
                *BEAT_FLAGS)  # fmt: skip
    match = await asyncio.to_thread(
        cli.wait_for_line, r"^listening on (\S+:\d+)", timeout=seconds(20)
    )
    running = Hub(match.group(1), spawn, [])
    try:
        yield running
    finally:
        await asyncio.gather(*(a.stop() for a in running.agents), return_exceptions=True)


async def refused(agent: BaseAgent, address: str, token: str) -> str:
    with pytest.raises(HandshakeError) as caught:
        await agent.connect(address, token=token)
    return str(caught.value)


async def test_names_roles_and_ids_are_claimed_as_the_token_allows(hub: Hub) -> None:
    await hub.join(Member("worker-1", role="processor"), WORKER)
    reason = await refused(Member("boss", role="processor"), hub.address, WORKER)
    assert "not permitted: the name 'boss'" in reason and "'workers'" in reason
    reason = await refused(Member("worker-2", role="member"), hub.address, WORKER)
    assert "not permitted: the role 'member'" in reason
    squatter = Member("worker-3", role="processor")
    squatter.id = "client-anything"  # an id another token's names are for
    reason = await refused(squatter, hub.address, WORKER)
    assert "not permitted: the id 'client-anything'" in reason
    reason = await refused(Member("client-x"), hub.address, "not-a-token-of-the-file")
    assert "authentication failed" in reason
    await hub.join(Member("anybody", role="whatever"), ADMIN)  # the admin's names: all


async def test_query_permission(hub: Hub) -> None:
    admin = await hub.join(Member("admin"), ADMIN)
    guest = await hub.join(Member("g-1"), GUEST)
    names: set[str] = set()
    async with asyncio.timeout(seconds(10)):  # g-1 is listed once its join is processed
        while "g-1" not in names:
            names = {a.name for a in await admin.get_connected_agents()}
    assert "playground" in names
    with pytest.raises(PermissionDenied, match=r"not permitted: query \(user 'guests'\)"):
        await guest.get_connected_agents()
    reason = await refused(Watcher("g-2"), hub.address, GUEST)
    assert "not permitted: query" in reason and "subscribe" in reason
    await hub.join(Watcher("admin-watcher"), ADMIN)

    def status(token: str) -> Any:
        run = hub.spawn(
            "-m", "ceylon", "status", "--connect", hub.address, "--once", "--token", token
        )
        return run, run.wait(seconds(20))

    run, code = await asyncio.to_thread(status, GUEST)
    assert code == 2 and "refused: not permitted: query" in run.output(), run.output()
    run, code = await asyncio.to_thread(status, ADMIN)
    assert code == 0 and "g-1" in run.output(), run.output()


async def test_broadcast_and_send_permissions(hub: Hub) -> None:
    reader = await hub.join(Member("client-reader"), CLIENT)
    sender = await hub.join(Member("client-sender"), CLIENT)
    admin = await hub.join(Member("admin"), ADMIN)
    worker = await hub.join(Member("worker-1", role="processor"), WORKER)
    await sender.broadcast_message(PermittedNote("broadcast by a client"))  # refused
    await sender.send_message("client-reader", PermittedNote("direct to a member"))  # allowed
    async with asyncio.timeout(seconds(10)):
        await wait_until(lambda: reader.notes == ["direct to a member"])
        await wait_until(lambda: bool(sender.undelivered))
    assert sender.undelivered[0][1] == "not permitted: broadcast (user 'clients')"
    assert worker.notes == []  # the refused broadcast went nowhere, the playground included
    with pytest.raises(PermissionDenied, match="not permitted: send to role 'processor'"):
        await sender.ask("worker-1", PermittedNote("to a worker"), timeout=seconds(10))
    reply = await sender.ask("client-reader", PermittedNote("asked"), timeout=seconds(10))
    assert reply == PermittedNote("re: asked")
    await admin.broadcast_message(PermittedNote("broadcast by the admin"))  # allowed
    async with asyncio.timeout(seconds(10)):
        await wait_until(lambda: "broadcast by the admin" in worker.notes)
        await wait_until(lambda: "broadcast by the admin" in reader.notes)
    assert "to a worker" not in worker.notes


def task_group(number: int) -> SubmitGroup:
    tasks = [TaskMessage(task_id=f"t{i}", name=f"t{i}", duration=0.01,
                         required_role="processor") for i in range(3)]  # fmt: skip
    return SubmitGroup(number, f"group-{number}", "", tasks)


async def test_submit_and_serve_task_permissions(hub: Hub) -> None:
    def worker(name: str, token: str, role: str = "processor") -> Any:
        return hub.spawn(
            "-m", "ceylon", "worker", "--connect", hub.address, "--token", token,
            "--agent", "ceylon.task:TaskExecutionAgent", "--role", role, "--name", name,
            "--no-reconnect", *BEAT_FLAGS,
        )  # fmt: skip

    serving = worker("worker-1", WORKER)
    await asyncio.to_thread(serving.wait_for_line, r"^agent worker-1 connected", seconds(20))
    unserving = worker("g-worker", GUEST)  # the guests' token grants no serve_tasks
    assert await asyncio.to_thread(unserving.wait, seconds(20)) != 0
    assert "not permitted: serve_tasks (user 'guests')" in unserving.output()

    client = await hub.join(Member("client-1"), CLIENT)
    reply = await client.ask("playground", task_group(1), timeout=seconds(10))
    assert isinstance(reply, GroupAccepted) and reply.error is None
    async with asyncio.timeout(seconds(20)):
        await wait_until(lambda: reply.group_id in client.done)
    assert client.done[reply.group_id] is TaskStatus.COMPLETED

    guest = await hub.join(Member("g-1"), GUEST)
    for other in (guest, await hub.join(Member("worker-2", role="processor"), WORKER)):
        with pytest.raises(PermissionDenied, match="not permitted: submit_tasks"):
            await other.ask("playground", task_group(2), timeout=seconds(10))
    # a report on a task by one that may not serve tasks is refused, and it is told
    await guest.send_message("playground", _update())
    async with asyncio.timeout(seconds(10)):
        await wait_until(lambda: bool(guest.undelivered))
    assert guest.undelivered[0] == (
        "ceylon.task.TaskStatusUpdate",
        "not permitted: serve_tasks (user 'guests')",
    )


def _update() -> TaskStatusUpdate:
    return TaskStatusUpdate(task_id="t0", status=TaskStatus.COMPLETED, result="forged")


async def test_meeting_permissions(hub: Hub) -> None:
    slots = [TimeSlot("2026-12-03", 9, 17)]
    for name in ("p-ann", "p-bob"):
        await hub.join(ParticipantAgent(name, slots), PEOPLE)
    reason = await refused(ParticipantAgent("g-carl", slots), hub.address, GUEST)
    assert "not permitted: answer_meetings (user 'guests')" in reason
    planner = await hub.join(Member("planner"), PLANNER)
    request = PlanRequest([Meeting("sync", "2026-12-03", 1, 2)])
    result = await planner.ask("playground", request, timeout=seconds(20))
    assert isinstance(result, PlanResult)
    assert [sorted(o.participants) for o in result.outputs] == [["p-ann", "p-bob"]]
    guest = await hub.join(Member("g-1"), GUEST)
    with pytest.raises(PermissionDenied, match="not permitted: plan_meetings"):
        await guest.ask("playground", request, timeout=seconds(10))


async def test_a_bad_auth_file_is_a_one_line_usage_error(spawn: Any, tmp_path: Path) -> None:
    bad = tmp_path / "auth.json"
    bad.write_text(json.dumps({"tokens": [{"token": "short", "allow": ["fly"]}]}))
    for args in (["--auth", str(bad)], ["--auth", str(tmp_path / "auth.toml"), "--token", "x"]):
        if "--token" in args:
            (tmp_path / "auth.toml").write_text(AUTH)
        run = spawn("-m", "ceylon", "playground", "--port", "0", *args)
        assert await asyncio.to_thread(run.wait, seconds(20)) == 2
        lines = run.output().strip().splitlines()
        assert len(lines) == 1, lines
        assert re.search(r"--auth .*token 1 .*at least 16 characters|--auth and --token", lines[0])
