"""A workspace on NATS: what only NATS has (standby playgrounds, the journal in
JetStream, a server of the cluster dying), with real nats-server and ceylon processes.

The behaviour NATS shares with TCP (order, privacy, asks, a killed worker) is tested by
the `hub`-parametrized tests of the other modules.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import secrets
import signal
import time
from pathlib import Path
from typing import Any

import msgpack
import nats

from ceylon import AgentDetail, BaseAgent, BasePlayGround, on
from ceylon.natsserver import NatsCluster
from ceylon.task import TaskExecutionAgent, TaskManager, TaskMessage, TaskPlayGround
from ceylon.testing import Process
from transport import Codec
from transport.wire import bin_header, messages_prefix

from ..conftest import BEAT_FLAGS, seconds, wait_until
from ..fixtures.task_workers import digest

TASKS = 1000  # tests.fixtures.task_groups:failover


@dataclasses.dataclass
class Greeting:
    seq: int


class Listener(BaseAgent):
    def __init__(self, name: str) -> None:
        super().__init__(name, role="listener")
        self.got: list[tuple[str, int]] = []

    @on(Greeting)
    async def chat(self, message: Greeting, agent: AgentDetail) -> None:
        self.got.append((agent.name, message.seq))


async def journal(url: str, workspace: str) -> tuple[dict[str, int], int]:
    """Per task, how many times the journal recorded it ended; and the records read."""
    client = await nats.connect(url)
    try:
        js = client.jetstream()
        stream = f"ceylon_{workspace}_tasks"
        info = await js.stream_info(stream)
        ended: collections.Counter[str] = collections.Counter()
        records = 0
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            ops = msgpack.unpackb((await js.get_msg(stream, seq)).data)
            records += 1
            assert not ops or ops[0][0] != "s", "compacted: the count would be off"
            for op in ops:
                if op[0] == "t" and op[3] in ("completed", "failed"):
                    ended[op[1]] += 1
        return dict(ended), records
    finally:
        await client.close()


async def test_the_sender_is_the_one_the_subject_names(nats_cluster: NatsCluster) -> None:
    workspace = f"t{secrets.token_hex(4)}"
    listener, victim = Listener("listener"), Listener("victim")
    playground = BasePlayGround(nats=nats_cluster.url, workspace=workspace)
    await playground.start()
    try:
        for agent in (listener, victim):
            await agent.connect(nats=nats_cluster.url, workspace=workspace)
        forger = await nats.connect(nats_cluster.urls)
        try:
            tag, body = Codec().encode_packed(Greeting(99))
            pair = tag + bin_header(len(body)) + body
            # published under the forger's own id, claiming the victim's in the payload
            lie = messages_prefix(victim.id, None, 1) + pair
            await forger.publish(f"ceylon.{workspace}.b.forger", lie)
            truth = messages_prefix("forger", None, 1) + pair
            await forger.publish(f"ceylon.{workspace}.b.forger", truth)
            await forger.flush()
        finally:
            await forger.close()
        async with asyncio.timeout(seconds(5)):
            await wait_until(lambda: len(listener.got) == 1)
        assert listener.got == [("forger", 99)]  # the lie was dropped, counted
        assert listener.stats().dropped == {"forged sender": 1}
    finally:
        await listener.stop()
        await victim.stop()
        await playground.finish()


async def test_a_standby_takes_over_and_no_task_is_lost_when_a_server_dies_too(
    spawn: Any, tmp_path: Path
) -> None:
    ttl = seconds(2)
    with NatsCluster(3, timeout=seconds(20)) as cluster:
        workspace = f"f{secrets.token_hex(4)}"
        reach = ("--nats", cluster.url, "--workspace", workspace)

        def playground() -> Process:
            child: Process = spawn(
                "-m", "ceylon", "playground", *reach, "--plugin", "tasks",
                "--lease-ttl", str(ttl), "--lease", str(seconds(3)), *BEAT_FLAGS,
            )  # fmt: skip
            child.wait_for_line(r"waiting for the lease", timeout=seconds(20))
            return child

        first = await asyncio.to_thread(playground)
        await asyncio.to_thread(first.wait_for_line, r"^active on NATS", seconds(20))
        second = await asyncio.to_thread(playground)  # in standby
        for n in range(4):
            worker = spawn(
                "-m", "ceylon", "worker", *reach, "--agent",
                "tests.fixtures.task_workers:Digester", "--role", "processor",
                "--name", f"w{n}", "--option", "max_concurrent_tasks=4", *BEAT_FLAGS,
            )  # fmt: skip
            await asyncio.to_thread(worker.wait_for_line, rf"^agent w{n} connected", seconds(20))
        out = tmp_path / "outcomes.json"
        submitter = spawn("-m", "ceylon", "tasks", "run", "tests.fixtures.task_groups:failover",
                          *reach, "--out", str(out), "--timeout", str(seconds(120)))  # fmt: skip

        async def ended() -> int:
            try:
                counts, _ = await journal(cluster.urls[0], workspace)
            except Exception:  # the stream is not there yet
                return 0
            return len(counts)

        done = 0
        async with asyncio.timeout(seconds(60)):
            while done < TASKS // 4:  # a quarter in: kill the active playground
                done = await ended()
        first.signal(signal.SIGKILL)
        killed_at = time.monotonic()
        assert await asyncio.to_thread(first.wait, seconds(10)) == -signal.SIGKILL
        await asyncio.to_thread(second.wait_for_line, r"^active on NATS", ttl + seconds(5))
        took_over = time.monotonic() - killed_at
        assert took_over <= ttl + seconds(2), f"the standby took {took_over:.1f} s"
        assert "resumed 1 group(s)" in second.output(), second.output()
        print(f"standby took over {took_over:.2f} s after the kill (TTL {ttl:g} s)")

        async with asyncio.timeout(seconds(60)):  # and then a server of the cluster dies
            while done < TASKS // 2:
                done = await ended()
        cluster.kill(0)

        code = await asyncio.to_thread(submitter.wait, seconds(120))
        assert code == 0, submitter.output()
        report = json.loads(out.read_text())
        results = {t["name"]: t["result"] for t in report["tasks"]}
        assert len(report["tasks"]) == TASKS
        assert all(t["status"] == "completed" for t in report["tasks"])
        assert results == {f"f{i:04}": digest(f"f{i:04}") for i in range(TASKS)}
        # The submitter hears of an outcome before it is journaled: the journal catches
        # up once its stream has a leader again after the server's death.
        counts: dict[str, int] = {}
        async with asyncio.timeout(seconds(30)):
            while len(counts) < TASKS:
                try:
                    counts, records = await journal(cluster.urls[1], workspace)
                except nats.errors.TimeoutError:  # the stream may be electing a leader
                    continue
        assert len(counts) == TASKS and set(counts.values()) == {1}, "recorded once each"
        print(f"{TASKS} tasks, each outcome recorded once in {records} journal records")


async def test_the_commands_that_connect_take_nats(spawn: Any, nats_cluster: NatsCluster) -> None:
    workspace = f"c{secrets.token_hex(4)}"
    reach = ("--nats", nats_cluster.url, "--workspace", workspace)
    playground = spawn("-m", "ceylon", "playground", *reach, "--plugin", "tasks", *BEAT_FLAGS)
    await asyncio.to_thread(playground.wait_for_line, r"^active on NATS", seconds(20))
    assert "task state journaled to jetstream:" in playground.output()
    worker = spawn("-m", "ceylon", "worker", *reach, "--agent", "ceylon.task:TaskExecutionAgent",
                   "--role", "processor", "--name", "w0", *BEAT_FLAGS)  # fmt: skip
    await asyncio.to_thread(worker.wait_for_line, r"^agent w0 connected to NATS", seconds(20))

    def ceylon(*args: str) -> tuple[int, str]:
        run: Process = spawn("-m", "ceylon", *args)
        code = run.wait(seconds(30))
        return code, run.output()

    code, out = await asyncio.to_thread(
        ceylon, "tasks", "run", "tests.fixtures.task_groups:small", *reach, "--timeout", "30"
    )
    assert code == 0 and "60" in out, out
    code, out = await asyncio.to_thread(ceylon, "tasks", "list", *reach, "--json")
    assert code == 0, out
    groups = json.loads(out.strip().splitlines()[-1])["groups"]
    assert sorted((g["name"], g["completed"]) for g in groups) == [("first", 40), ("second", 20)]
    code, out = await asyncio.to_thread(ceylon, "status", *reach, "--once", "--json")
    assert code == 0, out
    status = json.loads(out.strip().splitlines()[-1])
    assert "w0" in {a["name"] for a in status["agents"]}
    assert status["plugins"]["tasks"]["completed"] == 60


def test_nats_mistakes_are_one_line_usage_errors(spawn: Any) -> None:
    for args, said in (
        (["worker"], "--connect HOST:PORT or the servers as --nats"),
        (["worker", "--connect", "127.0.0.1:1", "--nats", "nats://127.0.0.1:1"],
         "--connect HOST:PORT or the servers as --nats"),
        (["worker", "--nats", "http://127.0.0.1:4222"], "--nats takes nats://HOST:PORT URLs"),
        (["status", "--nats", "nats://127.0.0.1:1", "--workspace", "a.b", "--once"],
         "cannot be used on NATS"),
        (["playground", "--nats", "nats://127.0.0.1:1", "--token", "secret"],
         "--token is for a TCP playground"),
    ):  # fmt: skip
        run = spawn("-m", "ceylon", *args)
        assert run.wait(seconds(20)) == 2, run.output()
        lines = run.output().strip().splitlines()
        assert len(lines) == 1 and said in lines[0], lines


async def test_a_task_playground_on_nats_runs_the_tutorials_api_and_journals_in_jetstream(
    nats_cluster: NatsCluster,
) -> None:
    workspace = f"p{secrets.token_hex(4)}"
    playground = TaskPlayGround(name="tasks", nats=nats_cluster.url, workspace=workspace)
    workers = [TaskExecutionAgent(f"w{i}", "processor", 2) for i in range(2)]
    tasks = [TaskMessage(name=f"t{i}", duration=0.01, required_role="processor")
             for i in range(20)]  # fmt: skip
    group = TaskManager.create_task_group("group", "", tasks)
    async with playground.play(workers=workers):
        assert playground.task_plugin.journal.store.path == f"jetstream:ceylon_{workspace}_tasks"
        await playground.assign_task_groups([group])
        await playground.wait_for_completion(timeout=seconds(20))
        assert len(playground.get_completed_tasks()) == 20
    counts, _ = await journal(nats_cluster.urls[0], workspace)
    assert len(counts) == 20 and set(counts.values()) == {1}


async def test_a_sender_whose_messages_the_handlers_are_far_behind_is_dropped_from(
    nats_cluster: NatsCluster,
) -> None:
    workspace = f"h{secrets.token_hex(4)}"
    playground = BasePlayGround(nats=nats_cluster.url, workspace=workspace)
    await playground.start()
    talker, listener = Listener("talker"), Listener("listener")
    try:
        for agent in (talker, listener):
            await agent.connect(nats=nats_cluster.url, workspace=workspace)
        link: Any = listener._link
        link.hold(talker.id, True)  # what the dispatcher asks when 10,000 wait
        await talker.send_message("listener", Greeting(1))
        async with asyncio.timeout(seconds(5)):
            await wait_until(lambda: listener.stats().dropped == {"dropped: handlers behind": 1})
        link.hold(talker.id, False)
        await talker.send_message("listener", Greeting(2))
        async with asyncio.timeout(seconds(5)):
            await wait_until(lambda: listener.got == [("talker", 2)])
    finally:
        await talker.stop()
        await listener.stop()
        await playground.finish()
