"""A `TaskStore` in a JetStream stream, for playgrounds on NATS (standby included).

The journal is a stream, ``ceylon_<workspace>_tasks`` (three replicas on a cluster of
three servers or more), of *records*: each commit of the writer is appended as one NATS
message, or a few when it is over the size limit, holding the writes of that commit
(groups added, task rows, groups ended, groups forgotten), msgpack-encoded. Opening the
store replays the stream from its start; the last write of a task wins, as in the
SQLite store. When the stream holds more than `COMPACT_AFTER` records, the writer
appends a *snapshot* of the whole state (its parts numbered, so that a snapshot cut
short by a crash is never taken for a whole one) and purges what came before it.

Fencing: every append says which stream sequence it expects to follow
(``Nats-Expected-Last-Sequence``). A playground that lost its lease and has not noticed
yet cannot write any more: its next append fails, it says so (`fenced`), and the
playground stops. A commit counts (`when_durable` callbacks run) once JetStream has
acknowledged every message of it, which on a cluster means a majority of the replicas
stored it.
"""

from __future__ import annotations

import asyncio
import collections
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import msgpack
from loguru import logger

from ..lease import jetstream_enabled, nats_busy, replicas_for
from .records import LogState, Op, group_ops, pack_records, read_record, task_op
from .store import StoredGroup, StoredState, StoredTask, StoreError

if TYPE_CHECKING:
    from nats.aio.client import Client

    from ..base.playground import BasePlayGround

__all__ = ["COMPACT_AFTER", "JetStreamTaskStore", "journal_on_nats"]

#: records after which the journal is compacted into a snapshot
COMPACT_AFTER: Final = 2000
#: the writer waits this long after a commit, so that the next one gathers more
COMMIT_PAUSE: Final = 0.02
#: seconds a journal just made may take before it takes messages
OPEN_PATIENCE: Final = 20.0
_pack = msgpack.Packer(use_bin_type=True).pack


class JetStreamTaskStore:
    """The task journal in JetStream (see the module docstring). Made by `open`."""

    def __init__(self, client: Client, workspace: str) -> None:
        self.client = client
        self.stream = f"ceylon_{workspace}_tasks"
        self.subject = f"ceylon.{workspace}.journal"
        self.path = f"jetstream:{self.stream}"
        #: set when an append was refused: another playground writes this journal now
        self.fenced: str | None = None
        #: whether appending is allowed now (a playground: while its lease is fresh)
        self.may_write: Callable[[], bool] = lambda: True
        self.on_fenced: Callable[[str], None] | None = None
        self._state = LogState()
        self._last = 0  # the stream sequence our next append follows
        self._records = 0  # since the last snapshot
        self._ops: list[Op] = []
        self._pending: collections.deque[tuple[str, bytes]] = collections.deque()
        self._writer_id = secrets.token_hex(6)
        self._sent = 0
        self._callbacks: list[Callable[[], None]] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False
        self._writer: asyncio.Task[None] | None = None
        self._limit = max(64 * 1024, (client.max_payload or 1024 * 1024) - 4096)
        self._log = logger.bind(agent="tasks")

    @classmethod
    async def open(
        cls, client: Client, workspace: str, replicas: int | None = None
    ) -> JetStreamTaskStore:
        """Find or make the stream and read the state back from it.

        Raises:
            StoreError: JetStream is not available, or the journal cannot be read.
        """
        store = cls(client, workspace)
        await store._open(replicas if replicas is not None else replicas_for(client))
        store._writer = asyncio.get_running_loop().create_task(store._write())
        return store

    async def _open(self, replicas: int) -> None:
        import nats.errors
        import nats.js.errors
        from nats.js.api import StorageType, StreamConfig

        js = self.client.jetstream()
        if not jetstream_enabled(self.client):
            raise StoreError("the task journal on NATS needs JetStream on the servers")
        deadline = asyncio.get_running_loop().time() + OPEN_PATIENCE
        while True:
            try:
                try:
                    info = await js.stream_info(self.stream)
                except nats.js.errors.NotFoundError:
                    config = StreamConfig(
                        name=self.stream,
                        subjects=[self.subject],
                        storage=StorageType.FILE,
                        num_replicas=replicas,
                        max_msg_size=-1,
                    )
                    info = await js.add_stream(config)
                break
            except nats_busy() as exc:  # a cluster just started: its leaders come
                if asyncio.get_running_loop().time() > deadline:
                    raise StoreError(f"JetStream does not answer: {exc}") from None
                await asyncio.sleep(0.2)  # a backoff while the cluster elects its leaders
            except nats.errors.Error as exc:
                raise StoreError(f"the task journal {self.stream} cannot be opened: {exc}") from exc
        assert info.state is not None
        first, last = info.state.first_seq, info.state.last_seq
        await self._replay(js, first, last)
        self._last = last
        # Our first append, at once: a writer before us that still has records to send
        # (it lost the lease while cut off) is fenced by it, not us by its. A stream just
        # made may need a moment before it takes messages.
        marker = _pack([["o", self._writer_id]])
        deadline = asyncio.get_running_loop().time() + OPEN_PATIENCE
        while True:
            try:
                await self._publish(f"{self._writer_id}-0", marker)
                return
            except nats_busy() as exc:
                if asyncio.get_running_loop().time() > deadline:
                    raise StoreError(f"{self.path} takes no messages: {exc}") from None
                await asyncio.sleep(0.2)  # a backoff while the stream's servers agree

    async def _replay(self, js: Any, first: int, last: int) -> None:
        import nats.js.errors

        snapshot: dict[str, Any] | None = None
        for seq in range(max(first, 1), last + 1):
            try:
                msg = await self._get(js, seq)
            except nats.js.errors.NotFoundError:
                continue  # purged or deleted
            ops = read_record(msg.data, self.path, seq)  # somebody could publish here
            if ops is None:
                continue
            snapshot = self._apply_record(ops, snapshot)
            self._records += 1

    async def _get(self, js: Any, seq: int) -> Any:
        """Record `seq`, asked again while the stream's servers are busy electing."""

        deadline = asyncio.get_running_loop().time() + OPEN_PATIENCE
        while True:
            try:
                return await js.get_msg(self.stream, seq)
            except nats_busy() as exc:
                if asyncio.get_running_loop().time() > deadline:
                    raise StoreError(f"{self.path}: record {seq} cannot be read: {exc}") from None
                await asyncio.sleep(0.2)  # a backoff while the stream's servers agree

    def _apply_record(
        self, ops: list[Any], snapshot: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """Apply one record to the state; returns the snapshot being gathered, if any."""
        if ops and ops[0][0] == "s":
            _, snapshot_id, part, count = ops[0]
            if snapshot is None or snapshot["id"] != snapshot_id or part == 0:
                snapshot = {"id": snapshot_id, "state": LogState()}
            state: LogState = snapshot["state"]
            for op in ops[1:]:
                state.apply(op)
            if part == count - 1:  # whole: it is the state now
                self._state = state
                self._records = 0
                return None
            return snapshot
        for op in ops:
            self._state.apply(op)
        return snapshot

    # -- the TaskStore interface -----------------------------------------------------------

    def load(self) -> StoredState:
        return self._state.state()

    def add_group(self, group: StoredGroup) -> None:
        for op in group_ops(group, self._limit):
            self._state.apply(op)
            self._queue(op)

    def put_task(self, task: StoredTask) -> None:
        if task.result is not None and len(task.result) > self._limit - 4096:
            self._log.error("the result of task {} ({} bytes) is over the journal's record "
                            "limit: journaled without it",
                            task.task_id, len(task.result))  # fmt: skip
            task = task._replace(result=None, error=task.error or "result too large")
        self._state.put(task)
        self._queue(task_op(task))

    def group_ended(self, group_id: str, status: str, goal_status: str = "") -> None:
        op = ["e", group_id, status, goal_status]
        self._state.apply(op)
        self._queue(op)

    def forget_groups(self, group_ids: list[str]) -> None:
        op = ["f", list(group_ids)]
        self._state.apply(op)
        self._queue(op)

    def when_durable(self, callback: Callable[[], None]) -> None:
        if self.fenced is not None:
            return  # never: another playground writes the journal now
        self._callbacks.append(callback)
        self._wake.set()

    def _queue(self, op: Op) -> None:
        if self._closed:
            raise StoreError("the task store is closed")
        self._ops.append(op)
        self._wake.set()

    def close(self) -> None:
        """Stop taking writes (`aclose` also sends what is queued)."""
        self._closed = True
        self._wake.set()

    async def aclose(self, timeout: float = 10.0) -> None:
        """Append what is queued (for at most `timeout` seconds), then stop the writer."""
        self._closed = True
        self._wake.set()
        writer, self._writer = self._writer, None
        if writer is None:
            return
        done, _ = await asyncio.wait({writer}, timeout=timeout)
        if not done:
            self._log.error("{}: {} journal record(s) not written in {:g} s; given up",
                            self.path, len(self._pending), timeout)  # fmt: skip
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)

    # -- the writer --------------------------------------------------------------------------

    async def _write(self) -> None:
        import nats.errors

        while True:
            await self._wake.wait()
            self._wake.clear()
            ops, self._ops = self._ops, []
            if ops:
                self._pending.extend(self._numbered(pack_records(ops, self._limit)))
            callbacks, self._callbacks = self._callbacks, []
            if self._pending and self.fenced is None:
                self._idle.clear()
                try:
                    if not self.may_write():
                        raise _NotNow("the lease was not renewed lately")
                    await self._append()
                    if self._records >= COMPACT_AFTER:
                        await self._compact()
                except _Fenced as exc:
                    self._fence(str(exc))
                except nats.errors.MaxPayloadError:  # ours to avoid: never sent again
                    self._log.error("{}: a journal record over the size limit was dropped",
                                    self.path)  # fmt: skip
                    self._pending.popleft()
                    self._wake.set()
                except Exception as exc:  # the cluster is out of reach: try again
                    if self.client.is_closed:
                        self._log.error("the NATS connection is closed: {} journal record(s) "
                                        "not written", len(self._pending))  # fmt: skip
                        return
                    self._log.warning("could not journal yet: {}", exc)
                    self._callbacks[:0] = callbacks
                    callbacks = []
                    await asyncio.sleep(0.5)  # a backoff, not a synchronisation
                    self._wake.set()
                finally:
                    self._idle.set()
            if self.fenced is None:
                for callback in callbacks:
                    try:
                        callback()
                    except Exception:  # one waiter's bug must not keep the others waiting
                        self._log.exception("a task store callback failed")
            if self._closed and not self._ops and not self._pending:
                return
            if self.fenced is not None and self._closed:
                return
            await asyncio.sleep(COMMIT_PAUSE)  # the next commit gathers more

    def _numbered(self, records: list[bytes]) -> list[tuple[str, bytes]]:
        """Each record with a message id of its own: a record sent again after a lost
        acknowledgement is recognised by JetStream as the one it stored."""
        numbered = []
        for record in records:
            self._sent += 1
            numbered.append((f"{self._writer_id}-{self._sent}", record))
        return numbered

    async def _append(self) -> None:
        pending = self._pending
        while pending:
            msg_id, record = pending[0]
            await self._publish(msg_id, record)
            pending.popleft()
            self._records += 1

    async def _publish(self, msg_id: str, record: bytes) -> None:
        import nats.js.errors

        js = self.client.jetstream()
        headers = {"Nats-Expected-Last-Sequence": str(self._last), "Nats-Msg-Id": msg_id}
        try:
            ack = await js.publish(self.subject, record, stream=self.stream, headers=headers)
        except nats.js.errors.APIError as exc:
            if exc.err_code in (10071, 10164):  # wrong last sequence: somebody else wrote
                raise _Fenced(f"another playground wrote the journal ({exc.description})") from None
            raise
        if not ack.duplicate:
            self._last = ack.seq
        elif ack.seq > self._last:  # ours, stored before its acknowledgement was lost
            self._last = ack.seq

    async def _compact(self) -> None:
        """Append the whole state as a snapshot, then purge what came before it."""
        ops = self._state.ops(self._limit)
        snapshot_id = f"{self._writer_id}-{self._sent + 1}"
        records = pack_records(ops, self._limit, snapshot=snapshot_id)
        first = self._last + 1
        self._pending.extend(self._numbered(records))
        await self._append()
        self._records = 0
        await self.client.jetstream().purge_stream(self.stream, seq=first)
        self._log.info("task journal compacted: {} record(s) from sequence {}", len(records), first)

    def _fence(self, reason: str) -> None:
        self.fenced = reason
        self._log.error("task journal: {}; this playground writes no more", reason)
        self._callbacks.clear()
        if self.on_fenced is not None:
            self.on_fenced(reason)


async def journal_on_nats(playground: BasePlayGround) -> JetStreamTaskStore:
    """The task plugin's store on a playground on NATS (a `StoreFactory`): the journal of
    its workspace in JetStream; the playground stops if another one writes it.

    Raises:
        StoreError: JetStream is not available.
    """
    client = playground.nats_client
    if client is None:
        raise StoreError("the task journal in JetStream needs a playground on NATS")
    store = await JetStreamTaskStore.open(client, playground.workspace)
    store.on_fenced = lambda reason: playground.stop_soon(f"task journal: {reason}")
    store.may_write = playground.lease_fresh
    return store


class _Fenced(Exception):
    pass


class _NotNow(Exception):
    pass
