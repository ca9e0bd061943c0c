"""The task journal in JetStream: what is written is read back, compacted or not; a
second writer fences the first; a large group travels in parts. And the lease."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client

from ceylon.lease import Lease, LeaseLost
from ceylon.natsserver import NatsServer
from ceylon.task import jetstream
from ceylon.task.jetstream import JetStreamTaskStore
from ceylon.task.store import MemoryTaskStore, StoredGroup, StoredTask, TaskStore

from ....conftest import seconds, wait_until


@pytest.fixture
async def client(nats_server: NatsServer) -> AsyncIterator[Client]:
    nc = await nats.connect(nats_server.url)
    yield nc
    await nc.close()


async def durable(store: TaskStore) -> None:
    done = asyncio.get_running_loop().create_future()
    store.when_durable(lambda: done.set_result(None))
    async with asyncio.timeout(seconds(10)):
        await done


def write(store: TaskStore) -> None:
    store.add_group(StoredGroup("g1", b"one", "pending", "alice"))
    store.add_group(StoredGroup("g2", b"two", "pending"))
    store.put_task(StoredTask("a", "g1", "in_progress", "w1", 1))
    store.put_task(StoredTask("a", "g1", "completed", "w1", 1, b"42", None, 1.0, 2.0))
    store.put_task(StoredTask("b", "g1", "failed", "w2", 2, None, "boom"))
    store.put_task(StoredTask("c", "g2", "completed", "w2", 1))
    store.group_ended("g2", "completed", "achieved")
    store.forget_groups(["g2"])


async def test_what_is_written_is_read_back_as_the_sqlite_store_would(client: Client) -> None:
    workspace = f"j{secrets.token_hex(4)}"
    store = await JetStreamTaskStore.open(client, workspace, replicas=1)
    write(store)
    await durable(store)
    await store.aclose()
    reference = MemoryTaskStore()
    write(reference)
    again = await JetStreamTaskStore.open(client, workspace, replicas=1)
    try:
        assert again.load() == reference.load()
    finally:
        await again.aclose()


async def test_a_compacted_journal_reads_back_the_same(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jetstream, "COMPACT_AFTER", 5)
    workspace = f"j{secrets.token_hex(4)}"
    store = await JetStreamTaskStore.open(client, workspace, replicas=1)
    reference = MemoryTaskStore()
    for target in (store, reference):
        target.add_group(StoredGroup("g", b"body", "pending"))
    for n in range(40):  # one commit each: well past the compaction point
        for target in (store, reference):
            target.put_task(StoredTask(f"t{n}", "g", "completed", "w", 1, b"r"))
        await durable(store)
    await store.aclose()
    js = client.jetstream()
    info = await js.stream_info(store.stream)
    assert info.state.first_seq > 1  # purged up to a snapshot
    again = await JetStreamTaskStore.open(client, workspace, replicas=1)
    try:
        assert again.load() == reference.load()
    finally:
        await again.aclose()


async def test_a_group_over_the_message_limit_travels_in_parts(client: Client) -> None:
    workspace = f"j{secrets.token_hex(4)}"
    body = secrets.token_bytes(3 * 1024 * 1024)  # over NATS's 1 MiB default
    store = await JetStreamTaskStore.open(client, workspace, replicas=1)
    store.add_group(StoredGroup("big", body, "pending"))
    await durable(store)
    await store.aclose()
    again = await JetStreamTaskStore.open(client, workspace, replicas=1)
    try:
        assert [g.body for g in again.load().groups] == [body]
    finally:
        await again.aclose()


async def test_a_second_writer_fences_the_first(client: Client) -> None:
    workspace = f"j{secrets.token_hex(4)}"
    first = await JetStreamTaskStore.open(client, workspace, replicas=1)
    first.add_group(StoredGroup("g", b"", "pending"))
    await durable(first)
    second = await JetStreamTaskStore.open(client, workspace, replicas=1)  # took over
    second.put_task(StoredTask("t", "g", "completed", "w2", 1))
    await durable(second)
    fenced: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    first.on_fenced = fenced.set_result
    first.put_task(StoredTask("t", "g", "failed", "w1", 1, None, "late"))
    async with asyncio.timeout(seconds(10)):
        assert "another playground wrote the journal" in await fenced
    ran: list[bool] = []
    first.when_durable(lambda: ran.append(True))  # never: it writes no more
    await first.aclose()
    await second.aclose()
    assert ran == []
    last = await JetStreamTaskStore.open(client, workspace, replicas=1)
    assert last.load().tasks["t"].worker == "w2"
    await last.aclose()


async def test_one_holder_of_the_lease_and_a_standby_takes_it_when_it_lapses(
    client: Client,
) -> None:
    workspace = f"l{secrets.token_hex(4)}"
    ttl = seconds(1.0)
    first, second = Lease(client, workspace, "one", ttl), Lease(client, workspace, "two", ttl)
    await first.open(replicas=1)
    await second.open(replicas=1)
    epoch = await first.acquire()
    keeping = asyncio.ensure_future(first.keep())
    waiting = asyncio.ensure_future(second.acquire())
    async with asyncio.timeout(ttl * 3):  # renewed twice: the standby still waits
        await wait_until(lambda: first._revision >= epoch + 2)
    assert not waiting.done()
    keeping.cancel()  # the holder stops renewing (as if it died)
    async with asyncio.timeout(ttl * 3):
        taken = await waiting
    assert taken > epoch
    with pytest.raises(LeaseLost, match="another playground took the lease"):
        await first.keep()
    await second.release()
    async with asyncio.timeout(ttl * 2):  # released: taken at once
        assert await first.acquire() > taken


async def test_a_lease_that_lapsed_while_nobody_took_it_is_taken_again(client: Client) -> None:
    workspace = f"l{secrets.token_hex(4)}"
    ttl = seconds(1.0)
    lease = Lease(client, workspace, "one", ttl)
    await lease.open(replicas=1)
    epoch = await lease.acquire()
    kv = await client.jetstream().key_value(lease.bucket)
    await kv.delete("playground")  # as if it expired while this holder was cut off
    epochs: asyncio.Queue[int] = asyncio.Queue()
    keeping = asyncio.ensure_future(lease.keep(epochs.put_nowait))
    try:
        async with asyncio.timeout(ttl * 3):
            again = await epochs.get()
        assert again > epoch and lease.fresh()
    finally:
        keeping.cancel()
        await asyncio.gather(keeping, return_exceptions=True)
