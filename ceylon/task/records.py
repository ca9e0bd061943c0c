"""Journal records: a task store's writes as msgpack-encoded operations.

The task stores on disk and on NATS (`SqliteTaskStore`, `JetStreamTaskStore`) append each commit
as a *record*, a msgpack array of operations, and read their state back by applying
the records in order; a snapshot is the state written out as operations again.

Operations (msgpack arrays):
    ["g", group_id, part, parts, body_part, status, submitter, goal_status]  group added
    ["t", task_id, group_id, status, worker, attempts, result, error, start, end]
    ["T", [[task_id, group_id, status, ...], ...]]    task rows, as "t" without the tag
    ["e", group_id, status, goal_status]                                      group ended
    ["f", [group_id, ...]]                                                    forgotten
    ["s", snapshot_id, part, parts]   (JetStream) the ops that follow in this record are
                                       part of a snapshot
    ["o", writer_id]                  (JetStream) a writer opened the journal here
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Final

import msgpack
from loguru import logger

from .store import StoredGroup, StoredState, StoredTask

__all__ = [
    "LogState",
    "Op",
    "group_ops",
    "pack_records",
    "read_record",
    "task_op",
    "well_formed",
]

_packer = msgpack.Packer(use_bin_type=True)
_pack = _packer.pack

#: an operation, as a list (read back) or a tuple (written)
Op = Sequence[Any]
#: the most task rows in one "T" operation of a snapshot
_ROWS_PER_OP: Final = 10_000


def task_op(task: StoredTask) -> list[Any]:
    return ["t", *task]


def group_ops(group: StoredGroup, limit: int) -> list[Op]:
    """The ops that add `group`, its body in parts that each fit a record of `limit`."""
    g = group
    step = max(1, limit - 1024)
    count = max(1, -(-len(g.body) // step))
    return [
        ["g", g.group_id, part, count, g.body[part * step : (part + 1) * step], g.status,
         g.submitter, g.goal_status]
        for part in range(count)
    ]  # fmt: skip


_SHAPES: Final = {"g": 8, "t": 10, "T": 2, "e": 4, "f": 2, "s": 4, "o": 2}


def _row_ok(row: list[Any]) -> bool:
    return (len(row) == 9 and type(row[0]) is str and type(row[1]) is str
            and type(row[2]) is str and type(row[3]) is str and type(row[4]) is int)  # fmt: skip


def well_formed(op: Any) -> bool:
    """Whether `op` has the shape of a journal operation (a journal is replayed as
    written: a record that is not ours must not stop a playground)."""
    if type(op) is not list or not op or _SHAPES.get(op[0]) != len(op):
        return False
    kind = op[0]
    if kind == "t":
        return _row_ok(op[1:])
    if kind == "T":
        return type(op[1]) is list and all(type(row) is list and _row_ok(row) for row in op[1])
    if kind == "g":
        return (type(op[1]) is str and type(op[2]) is int and type(op[3]) is int
                and type(op[4]) is bytes and 0 <= op[2] < op[3])  # fmt: skip
    if kind == "e":
        return all(type(v) is str for v in op[1:])
    if kind == "f":
        return type(op[1]) is list and all(type(v) is str for v in op[1])
    if kind == "s":
        return type(op[2]) is int and type(op[3]) is int and 0 <= op[2] < op[3]
    return True


def read_record(data: bytes, where: str, seq: int) -> list[Any] | None:
    """The ops of record `seq` of `where`; None, said in the log, for one that is not a
    journal record (a journal is replayed as written: something else written there must
    not stop a playground)."""
    try:
        ops = msgpack.unpackb(data, raw=False, strict_map_key=False)
        if type(ops) is not list or not all(well_formed(op) for op in ops):
            raise ValueError("not a list of journal operations")
    except Exception as exc:
        logger.bind(agent="tasks").error(
            "{}: record {} skipped, it is not a journal record ({})", where, seq, exc
        )
        return None
    return ops


def _row_size(row: tuple[Any, ...]) -> int:
    """About the bytes of a task row packed (its strings and result; 64 for the rest)."""
    task_id, group_id, _, worker, _, result, error = row[:7]
    return 64 + len(task_id) + len(group_id) + len(worker) + len(result or b"") + len(error or "")


class LogState:
    """The state a log of operations makes. Task rows are kept as plain tuples, which the
    garbage collector stops tracking (they hold no containers; it never stops tracking
    a subclass's, such as `StoredTask`): a playground keeps one for each task, and its
    full collections would otherwise walk them all."""

    def __init__(self) -> None:
        self.groups: dict[str, StoredGroup] = {}  # in the order they were added
        #: group id -> task id -> its row (a `StoredTask`'s fields)
        self.tasks: dict[str, dict[str, tuple[Any, ...]]] = {}
        self._parts: dict[str, list[bytes]] = {}  # group id -> the body's parts so far

    def put(self, row: Sequence[Any]) -> None:
        """Keep a task's row: a `StoredTask`, or its fields as a tuple or a list."""
        tasks = self.tasks.get(row[1])
        if tasks is None:
            tasks = self.tasks[row[1]] = {}
        tasks[row[0]] = row if type(row) is tuple else tuple(row)

    def apply(self, op: Op) -> None:
        """Apply one well-formed op (see the module docstring)."""
        kind = op[0]
        if kind == "T":
            for row in op[1]:
                self.put(row)
        elif kind == "t":
            self.put(op[1:])
        elif kind == "g":
            _, group_id, part, count, chunk, status, submitter, goal = op
            pieces = self._parts.setdefault(group_id, [])
            if part == 0:
                pieces.clear()
            pieces.append(chunk)
            if part == count - 1 and len(pieces) == count:
                del self._parts[group_id]
                self.groups.pop(group_id, None)  # added again: it comes last
                self.groups[group_id] = StoredGroup(
                    group_id, b"".join(pieces), status, submitter, goal
                )
        elif kind == "e":
            group = self.groups.get(op[1])
            if group is not None:
                self.groups[op[1]] = dataclasses.replace(group, status=op[2], goal_status=op[3])
        elif kind == "f":
            for group_id in op[1]:
                self.groups.pop(group_id, None)
                self.tasks.pop(group_id, None)
        # "o": a writer opened the journal here; nothing to apply

    def size(self) -> int:
        """How many groups and task rows make this state."""
        return len(self.groups) + sum(len(tasks) for tasks in self.tasks.values())

    def ops(self, limit: int) -> list[Op]:
        """The ops that make this state from nothing (a snapshot)."""
        ops: list[Op] = []
        for group in self.groups.values():
            ops += group_ops(group, limit)
        for tasks in self.tasks.values():
            # "T" ops of at most half a record each: a record holds whole ops
            rows: list[tuple[Any, ...]] = []
            size = 0
            for row in tasks.values():
                weight = _row_size(row)
                if rows and (size + weight > limit // 2 or len(rows) >= _ROWS_PER_OP):
                    ops.append(("T", rows))
                    rows, size = [], 0
                rows.append(row)
                size += weight
            if rows:
                ops.append(("T", rows))
        return ops

    def state(self) -> StoredState:
        make = StoredTask._make
        tasks = {
            task_id: make(row) for group in self.tasks.values() for task_id, row in group.items()
        }
        return StoredState(list(self.groups.values()), tasks)


def pack_records(ops: list[Op], limit: int, snapshot: str | None = None) -> list[bytes]:
    """`ops` packed into records of at most `limit` bytes (a group body over the limit
    was split into parts by `group_ops`). A snapshot's records each start with its
    ``["s", id, part, parts]`` header."""
    packed = [_pack(op) for op in ops]
    batches: list[list[bytes]] = [[]]
    size = 0
    for item in packed:
        if batches[-1] and size + len(item) > limit - 64:
            batches.append([])
            size = 0
        batches[-1].append(item)
        size += len(item)
    records = []
    for index, batch in enumerate(batches):
        items = batch
        if snapshot is not None:
            items = [_pack(["s", snapshot, index, len(batches)]), *batch]
        records.append(_packer.pack_array_header(len(items)) + b"".join(items))
    return records
