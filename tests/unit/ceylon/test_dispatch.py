from __future__ import annotations

import asyncio
from typing import Any

from ceylon.dispatch import Dispatcher
from ceylon.handlers import validate_handler
from ceylon.peer import AgentDetail

from ...conftest import seconds, wait_until

A = AgentDetail("a", "a")
B = AgentDetail("b", "b")


class Owner:
    name = "owner"

    def __init__(self) -> None:
        self.log: list[tuple[str, int]] = []
        self.gates: dict[int, asyncio.Event] = {}

    async def handle(self, msg: int, agent: AgentDetail) -> None:
        gate = self.gates.get(msg)
        if gate is not None:
            await gate.wait()
        if msg == -2:  # awaits something that was cancelled: the handler's own failure
            cancelled = asyncio.get_running_loop().create_future()
            cancelled.cancel()
            await cancelled
        if msg == -3:  # cancels its own task: still only that handler's failure
            current = asyncio.current_task()
            assert current is not None
            current.cancel()
            await asyncio.sleep(0)
        if msg < 0:
            raise ValueError("negative")
        self.log.append((agent.id, msg))


def specs() -> tuple[Any, ...]:
    return (validate_handler(Owner.handle, "message", bound=False, message_type=int),)


async def test_per_sender_order_and_concurrency_across_senders() -> None:
    owner = Owner()
    dispatcher = Dispatcher(owner)
    owner.gates[1] = asyncio.Event()  # sender a's first message is slow
    for n in (1, 2, 3):
        dispatcher.submit(specs(), n, A, 0, "x")
    for n in (10, 11):
        dispatcher.submit(specs(), n, B, 0, "x")
    async with asyncio.timeout(seconds(5)):
        await wait_until(lambda: len(owner.log) >= 2)
    assert owner.log == [("b", 10), ("b", 11)]  # b was not held up by a
    owner.gates[1].set()
    async with asyncio.timeout(seconds(5)):
        await dispatcher.wait_idle()
    assert [n for s, n in owner.log if s == "a"] == [1, 2, 3]
    await dispatcher.close()


async def test_a_raising_handler_is_contained() -> None:
    owner = Owner()
    dispatcher = Dispatcher(owner)
    for n in (-1, -2, -3, 5, 6):
        dispatcher.submit(specs(), n, A, 0, "x")
    async with asyncio.timeout(seconds(5)):
        await dispatcher.wait_idle()
    assert owner.log == [("a", 5), ("a", 6)]
    assert dispatcher.pending == 0
    await dispatcher.close()


async def test_pressure_pauses_and_releases_the_origin() -> None:
    owner = Owner()
    calls: list[tuple[str, bool]] = []
    dispatcher = Dispatcher(owner, on_pressure=lambda o, p: calls.append((o, p)), max_pending=4)
    owner.gates[0] = asyncio.Event()
    for n in range(8):
        dispatcher.submit(specs(), n, A, 0, "conn-1")
    assert calls == [("conn-1", True)]
    owner.gates[0].set()
    async with asyncio.timeout(seconds(5)):
        await dispatcher.wait_idle()
    assert calls == [("conn-1", True), ("conn-1", False)]
    await dispatcher.close()


async def test_close_cancels_running_handlers() -> None:
    owner = Owner()
    dispatcher = Dispatcher(owner)
    owner.gates[0] = asyncio.Event()
    dispatcher.submit(specs(), 0, A, 0, "x")
    await asyncio.sleep(0)
    await dispatcher.close()
    dispatcher.submit(specs(), 1, A, 0, "x")  # ignored after close
    assert owner.log == [] and dispatcher.pending == 0


async def test_encoded_messages_are_built_in_turn_and_failures_take_their_place() -> None:
    owner = Owner()
    events: list[Any] = []

    def build(body: bytes) -> int:
        events.append(("build", body))
        return int(body)  # ValueError for b"x"

    def failed(tag: str, body: bytes, exc: Exception, sender: AgentDetail, direct: bool) -> None:
        events.append(("failed", body, type(exc).__name__, sender.id, direct))

    dispatcher = Dispatcher(owner, build=lambda tag, bodies: (build, None), on_build_failed=failed)
    owner.gates[1] = asyncio.Event()
    dispatcher.submit_encoded(specs(), "int", [b"1", b"x", b"2"], A, 0, "o", True)
    dispatcher.submit(specs(), 3, A, 0, "o")  # built already: behind the encoded ones
    assert dispatcher.pending == 4
    async with asyncio.timeout(seconds(5)):
        await wait_until(lambda: bool(events))
    await asyncio.sleep(0)
    assert events == [("build", b"1")]  # the next is built only once the first is handled
    owner.gates[1].set()
    async with asyncio.timeout(seconds(5)):
        await dispatcher.wait_idle()
    assert events == [
        ("build", b"1"),
        ("build", b"x"),
        ("failed", b"x", "ValueError", "a", True),
        ("build", b"2"),
    ]
    assert owner.log == [("a", 1), ("a", 2), ("a", 3)]
    assert dispatcher.pending == 0
    await dispatcher.close()


async def test_a_body_the_quick_builder_refuses_goes_to_the_general_one() -> None:
    owner = Owner()
    events: list[Any] = []

    def quick(body: bytes) -> int:
        events.append(("quick", body))
        if not body.isdigit():
            raise ValueError("not for me")
        return int(body)

    def general(body: bytes) -> int:
        events.append(("general", body))
        return int(body.strip())  # ValueError for b"x"

    def failed(tag: str, body: bytes, exc: Exception, sender: AgentDetail, direct: bool) -> None:
        events.append(("failed", body, str(exc)))

    asked: list[tuple[str, list[bytes]]] = []

    def builders(tag: str, bodies: list[bytes]) -> tuple[Any, Any]:
        asked.append((tag, list(bodies)))
        return quick, general

    dispatcher = Dispatcher(owner, build=builders, on_build_failed=failed)
    dispatcher.submit_encoded(specs(), "int", [b"1", b" 2", b"x"], A, 0, "o", True)
    async with asyncio.timeout(seconds(5)):
        await dispatcher.wait_idle()
    assert asked == [("int", [b"1", b" 2", b"x"])]  # once for the run
    assert events == [
        ("quick", b"1"),
        ("quick", b" 2"),
        ("general", b" 2"),
        ("quick", b"x"),
        ("general", b"x"),
        ("failed", b"x", "invalid literal for int() with base 10: b'x'"),  # the general's
    ]
    assert owner.log == [("a", 1), ("a", 2)]
    await dispatcher.close()


async def test_encoded_work_counts_towards_pressure() -> None:
    owner = Owner()
    calls: list[tuple[str, bool]] = []
    dispatcher = Dispatcher(
        owner,
        on_pressure=lambda o, p: calls.append((o, p)),
        max_pending=4,
        build=lambda t, b: (int, None),
    )
    owner.gates[0] = asyncio.Event()
    dispatcher.submit_encoded(specs(), "int", [b"0"] * 8, A, 0, "conn-1", False)
    assert calls == [("conn-1", True)]
    owner.gates[0].set()
    async with asyncio.timeout(seconds(5)):
        await dispatcher.wait_idle()
    assert calls == [("conn-1", True), ("conn-1", False)]
    await dispatcher.close()


class Reader:
    """Handlers that record what they see when the read path starts them."""

    name = "reader"

    def __init__(self) -> None:
        self.log: list[Any] = []
        self.gate = asyncio.Event()

    async def handle(self, msg: int, agent: AgentDetail) -> None:
        task = asyncio.current_task()
        self.log.append(("start", msg, task is not None))
        if msg == 1:  # waits: the rest of the run carries on in the task
            async with asyncio.timeout(seconds(5)):
                await self.gate.wait()
        if msg in (-3, -4):  # cancels its own task: that handler's failure only
            assert task is not None
            task.cancel()
            if msg == -3:
                await asyncio.sleep(0)
        self.log.append(("end", msg))


def reader_specs() -> tuple[Any, ...]:
    return (validate_handler(Reader.handle, "message", bound=False, message_type=int),)


def from_the_read_path(callback: Any) -> asyncio.Future[None]:
    """Run `callback` as a loop callback (no task running), as data_received is run."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def run() -> None:
        callback()
        done.set_result(None)

    loop.call_soon(run)
    return done


async def test_the_read_path_runs_an_idle_senders_handlers_at_once() -> None:
    owner = Reader()
    dispatcher = Dispatcher(owner)
    await from_the_read_path(lambda: dispatcher.submit(reader_specs(), 0, A, 0, "x"))
    # handled within the callback itself, inside a task of its own
    assert owner.log == [("start", 0, True), ("end", 0)]
    assert dispatcher.pending == 0
    await dispatcher.close()


async def test_a_handler_started_at_once_that_waits_carries_on_in_order() -> None:
    owner = Reader()
    dispatcher = Dispatcher(owner)

    def submit() -> None:
        for n in (1, 2):
            dispatcher.submit(reader_specs(), n, A, 0, "x")
        dispatcher.submit(reader_specs(), 10, B, 0, "x")

    await from_the_read_path(submit)
    # a's first handler waits (under asyncio.timeout, which needs a task); b is not held
    assert owner.log == [("start", 1, True), ("start", 10, True), ("end", 10)]
    await from_the_read_path(lambda: dispatcher.submit(reader_specs(), 3, A, 0, "x"))
    assert owner.log[3:] == []  # queued behind a's waiting handler, not started
    owner.gate.set()
    async with asyncio.timeout(seconds(5)):
        await dispatcher.wait_idle()
    assert [entry for entry in owner.log if entry[0] == "end"] == [
        ("end", 10),
        ("end", 1),
        ("end", 2),
        ("end", 3),
    ]
    await dispatcher.close()


async def test_close_cancels_a_handler_started_at_once() -> None:
    owner = Reader()
    dispatcher = Dispatcher(owner)
    await from_the_read_path(lambda: dispatcher.submit(reader_specs(), 1, A, 0, "x"))
    assert owner.log == [("start", 1, True)]
    async with asyncio.timeout(seconds(5)):
        await dispatcher.close()
    assert owner.log == [("start", 1, True)] and dispatcher.pending == 0


async def test_a_handler_started_at_once_that_cancels_its_task_fails_alone() -> None:
    owner = Reader()
    dispatcher = Dispatcher(owner)
    for n in (-3, 5, -4, 6):
        await from_the_read_path(lambda n=n: dispatcher.submit(reader_specs(), n, A, 0, "x"))
        async with asyncio.timeout(seconds(5)):
            await dispatcher.wait_idle()
    # -3 was cancelled where it waited; -4 finished first; neither cancelled another
    assert [entry for entry in owner.log if entry[0] == "end"] == [
        ("end", 5),
        ("end", -4),
        ("end", 6),
    ]
    await dispatcher.close()


class Grouped:
    """A handler that runs a TaskGroup (it needs a current task) and waits on it."""

    name = "grouped"

    def __init__(self) -> None:
        self.done: list[int] = []

    async def handle(self, msg: int, agent: AgentDetail) -> None:
        async def child() -> None:
            await asyncio.sleep(0)
            self.done.append(msg)

        async with asyncio.TaskGroup() as group:
            group.create_task(child())


async def test_a_handler_started_at_once_can_run_a_task_group() -> None:
    owner = Grouped()
    dispatcher = Dispatcher(owner)
    specs = (validate_handler(Grouped.handle, "message", bound=False, message_type=int),)
    await from_the_read_path(lambda: dispatcher.submit(specs, 7, A, 0, "x"))
    async with asyncio.timeout(seconds(5)):
        await dispatcher.wait_idle()
    assert owner.done == [7]
    await dispatcher.close()
