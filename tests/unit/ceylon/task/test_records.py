"""Journal records: operations applied in order make the state; a snapshot makes it again."""

from __future__ import annotations

import gc
from typing import Any

import msgpack

from ceylon.task.records import LogState, group_ops, pack_records, task_op, well_formed
from ceylon.task.store import StoredGroup, StoredTask


def replayed(ops: list[Any]) -> LogState:
    """The state `ops` make, after a trip through msgpack (as read back from a journal)."""
    state = LogState()
    for op in msgpack.unpackb(msgpack.packb(ops)):
        assert well_formed(op), op
        state.apply(op)
    return state


def test_operations_applied_in_order_make_the_state() -> None:
    big = StoredGroup("g1", bytes(range(256)) * 40, "pending", "alice")
    ops = [
        *group_ops(big, 4096),  # a body in parts
        ["g", "g2", 0, 1, b"two", "pending", "", ""],
        task_op(StoredTask("a", "g1", "in_progress", "w1", 1)),
        ["T", [["a", "g1", "completed", "w1", 1, b"r", None, 1.0, 2.0],
               ["b", "g2", "failed", "w2", 2, None, "boom", None, None]]],
        ["e", "g1", "completed", "achieved"],
        ["e", "nobody", "completed", ""],  # a group it never had: nothing to end
        ["f", ["g2"]],
        ["o", "writer-1"],  # a writer opened the journal: nothing to apply
    ]  # fmt: skip
    assert len(group_ops(big, 4096)) == 4  # 10,240 bytes, 3,072 a part
    state = replayed(ops).state()
    assert [(g.group_id, g.body, g.status, g.goal_status) for g in state.groups] == [
        ("g1", big.body, "completed", "achieved")
    ]
    assert state.tasks == {"a": StoredTask("a", "g1", "completed", "w1", 1, b"r", None, 1.0, 2.0)}


def test_a_group_added_again_after_it_was_forgotten_starts_afresh_and_comes_last() -> None:
    ops = [
        ["g", "g1", 0, 1, b"old", "pending", "", ""],
        ["g", "g2", 0, 1, b"two", "pending", "", ""],
        task_op(StoredTask("a", "g1", "completed", "w", 1)),
        ["f", ["g1"]],
        ["g", "g1", 0, 1, b"new", "pending", "", ""],
    ]
    state = replayed(ops).state()
    assert [(g.group_id, g.body) for g in state.groups] == [("g2", b"two"), ("g1", b"new")]
    assert state.tasks == {}


def test_a_snapshot_makes_the_same_state_again() -> None:
    state = LogState()
    for op in [
        *group_ops(StoredGroup("g1", b"x" * 10_000, "pending", "s", ""), 4096),
        ["g", "g2", 0, 1, b"two", "completed", "", "achieved"],
    ]:
        state.apply(op)
    for i in range(25_000):  # more rows than one "T" op of a snapshot holds
        state.put(StoredTask(f"t{i}", f"g{i % 2 + 1}", "completed", "w", 1, b"r"))
    for i in range(3):  # rows with results near a record's size
        state.put(StoredTask(f"big{i}", "g1", "completed", "w", 1, bytes(60_000)))
    assert state.size() == 25_005
    limit = 64 * 1024
    snapshot = state.ops(limit)
    again = replayed([list(op) for op in snapshot])
    assert again.state() == state.state()
    assert all(len(msgpack.packb(op)) <= limit - 64 for op in snapshot)  # each fits a record
    records = pack_records(snapshot, limit, snapshot="s1")
    assert len(records) > 3 and all(len(r) <= limit for r in records)


def test_what_is_not_an_operation_is_told_apart() -> None:
    assert not well_formed(["t", "a", "g"])  # too short
    assert not well_formed(["t", "a", "g", "done", "w", "1", None, None, None, None])
    assert not well_formed(["T", [["a", "g", "done"]]])
    assert not well_formed(["T", "rows"])
    assert not well_formed(["g", "g1", 1, 1, b"", "", "", ""])  # part out of range
    assert not well_formed(["f", "g1"])
    assert not well_formed(["x"])
    assert not well_formed("t")
    assert well_formed(["T", []])


def test_the_rows_kept_are_left_alone_by_the_garbage_collector() -> None:
    state = LogState()
    state.put(StoredTask("a", "g", "completed", "w", 1))  # a NamedTuple: copied
    state.put(["b", "g", "completed", "w", 1, None, None, None, None])  # read back: copied
    gc.collect()
    assert all(type(row) is tuple and not gc.is_tracked(row) for row in state.tasks["g"].values())
