"""Slow consumers, every party a process of its own over 127.0.0.1 TCP.

One agent broadcasts as fast as it can while a pacer sends an observer 20 messages a
second; one receiver cannot keep up: its handler is slow, it is SIGSTOPped, or it is a
raw client that never reads. The playground must cut it, and only it, within its grace
period plus a second, while the observer goes on receiving at 20 a second. With the
"drop" policy the slow agent keeps its connection and the drops are counted.

Times cross process boundaries as the `time.time()` stamps the agents print and as the
clock time of the playground's log lines (``HH:MM:SS.mmm | LEVEL | who | message``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import re
import signal
import time
from typing import Any

import transport
from ceylon import BaseAgent
from ceylon.testing import Process
from transport.framing import encode_frame
from transport.protocol import CLIENT, HandshakeComplete, Protocol
from transport.wire import Pong, encode_record

from ..agents import Command
from ..conftest import BEAT_FLAGS, BEAT_INTERVAL, BEAT_TIMEOUT, seconds

HOST = "127.0.0.1"
GRACE = seconds(1.0)
MAX_PENDING = 262_144
SLOW_FLAGS = ("--max-pending-bytes", str(MAX_PENDING), "--slow-consumer-grace", str(GRACE))
#: How late after it became slow a consumer may be cut.
CUT_WITHIN = GRACE + seconds(1.0)
#: The observer's rate from the pacer is measured over this long from the flood's start.
RATE = 20.0
WINDOW = seconds(4.0)
PACES = int(RATE * (WINDOW + seconds(20)))  # more than any test waits for
FLOOD_SECONDS = seconds(3.0)


def patient(timeout: float) -> tuple[str, ...]:
    """Fast heartbeats, but a peer is dead only after `timeout` seconds (scaled)."""
    return (
        "--heartbeat-interval",
        str(BEAT_INTERVAL),
        "--heartbeat-timeout",
        str(seconds(timeout)),
    )


#: The flood sender's heartbeats: it is paused while a receiver is congested, up to the
#: grace period, and a pause as long as its heartbeat timeout costs it the connection
#: (see test_a_flood_sender_paused_for_the_grace_period_keeps_its_connection).
FLOODER_BEAT = patient(3.0)

CLOSED = r"^(\d\d:\d\d:\d\d\.\d{{3}}) \| WARNING \| {name} \| connection closed: (.*)$"
BEAT_LINE = r"^observer beat \d+ from pacer sent \S+ at (\S+)$"


# -- processes -----------------------------------------------------------------------


def start_playground(spawn: Any, *flags: str) -> tuple[Process, str]:
    playground: Process = spawn("-m", "ceylon", "playground", "--port", "0", *flags)
    match = playground.wait_for_line(r"^listening on (\S+:\d+)", timeout=seconds(20))
    return playground, match.group(1)


def start_worker(spawn: Any, address: str, agent: str, name: str, *extra: str) -> Process:
    """``ceylon worker`` running ``tests.agents:<agent>``; `extra` flags override BEAT."""
    worker: Process = spawn(
        "-m", "ceylon", "worker", "--connect", address, "--agent", f"tests.agents:{agent}",
        "--name", name, "--no-reconnect", *BEAT_FLAGS, *extra,
    )  # fmt: skip
    return worker


def connected(*workers: tuple[Process, str]) -> None:
    for worker, name in workers:
        worker.wait_for_line(rf"^agent {name} connected", timeout=seconds(20))


def start_bystanders(spawn: Any, address: str) -> tuple[Process, Process]:
    """The observer, and the pacer sending it 20 Beats a second once it is there."""
    observer = start_worker(spawn, address, "Recorder", "observer")
    pacer = start_worker(spawn, address, "Pacer", "pacer", "--option", f"count={PACES}")
    return observer, pacer


def start_flood(spawn: Any, address: str, *extra: str) -> tuple[Process, float]:
    """Start the flooder; return it and when its flood started."""
    flooder = start_worker(
        spawn, address, "Flooder", "flooder", "--option", f"seconds={FLOOD_SECONDS}", *extra
    )
    return flooder, stamp(flooder, r"^flooder flood start (\S+)$", seconds(20))


# -- reading what they print ---------------------------------------------------------


def first_line(process: Process, pattern: str, timeout: float) -> re.Match[str]:
    """The first line matching `pattern` printed so far, or else within `timeout`."""
    regex = re.compile(pattern)
    for line in process.drain():
        if match := regex.search(line):
            return match
    return process.wait_for_line(pattern, timeout)


def stamp(process: Process, pattern: str, timeout: float) -> float:
    """The number group 1 of `pattern` captures (a `time.time()` a process printed)."""
    return float(first_line(process, pattern, timeout).group(1))


def log_time(clock: str, near: float) -> float:
    """The epoch time of a log line's local ``HH:MM:SS.mmm``: the day nearest `near`."""
    day = datetime.datetime.fromtimestamp(near).date()
    moment = datetime.datetime.combine(day, datetime.time.fromisoformat(clock)).timestamp()
    return min((moment + shift for shift in (-86400, 0, 86400)), key=lambda t: abs(t - near))


def closed(playground: Process, name: str, near: float, timeout: float) -> tuple[float, str]:
    """When the playground closed its connection to `name` abnormally, and why."""
    match = first_line(playground, CLOSED.format(name=re.escape(name)), timeout)
    return log_time(match.group(1), near), match.group(2)


def arrivals(observer: Process, until: float, timeout: float) -> list[float]:
    """When the observer got each Beat, once one arrived at `until` or later."""
    regex = re.compile(BEAT_LINE)
    deadline = time.monotonic() + timeout
    while True:
        stamps = [float(m.group(1)) for line in observer.drain() if (m := regex.search(line))]
        if stamps and stamps[-1] >= until:
            return stamps
        observer.wait_for_line(BEAT_LINE, max(0.0, deadline - time.monotonic()))


def events(playground: Process) -> str:
    """What the playground logged about connections: who was cut, who left, and why."""
    return "\n".join(line for line in playground.drain() if "WARNING" in line or " left: " in line)


def assert_steady(observer: Process, flood_start: float, playground: Process) -> None:
    """The observer got the pacer's 20 a second (within 10%) all through the window."""
    end = flood_start + WINDOW
    try:
        stamps = arrivals(observer, end, end - time.time() + seconds(5))
    except (TimeoutError, RuntimeError) as exc:
        raise AssertionError(f"the beats stopped; the playground:\n{events(playground)}") from exc
    count = sum(1 for t in stamps if flood_start <= t < end)
    expected = RATE * WINDOW
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False) if flood_start <= b < end]
    print(f"observer: {count} beats in {WINDOW:g} s (expected {expected:g}), largest gap "
          f"{max(gaps, default=0):.3f} s")  # fmt: skip
    assert abs(count - expected) <= 0.1 * expected, (count, expected)


def assert_only_cut(playground: Process, *names: str) -> None:
    """The playground closed no connection abnormally but those of `names`."""
    who = re.compile(r"^\S+ \| WARNING \| (\S+) \| connection closed: ")
    cut = {m.group(1) for line in playground.drain() if (m := who.search(line))}
    assert cut <= set(names), events(playground)


def assert_flood_kept_its_connection(flooder: Process) -> None:
    first_line(flooder, r"^flooder flood done \d+", FLOOD_SECONDS + seconds(10))
    assert "lost the playground" not in flooder.output(), flooder.output()


# -- a raw client that never reads -----------------------------------------------------


async def raw_client(
    port: int, name: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, Protocol]:
    """Connect and complete the handshake by hand; the caller never reads afterwards
    (it may still write, with the returned protocol)."""
    reader, writer = await asyncio.open_connection(HOST, port)
    protocol = Protocol(CLIENT, transport.make_identity(name))
    writer.write(protocol.data_to_send())
    async with asyncio.timeout(seconds(10)):
        while not any(isinstance(e, HandshakeComplete) for e in protocol.events_received()):
            data = await reader.read(4096)
            assert data, "the playground closed during the handshake"
            protocol.receive_data(data)
            writer.write(protocol.data_to_send())
    transport_ = writer.transport
    assert isinstance(transport_, asyncio.ReadTransport)
    transport_.pause_reading()  # not even into the stream's buffer
    return reader, writer, protocol


async def pong_forever(writer: asyncio.StreamWriter, sent: list[float]) -> None:
    """Send an unsolicited Pong every BEAT_INTERVAL until the connection breaks (or a
    bounded count), noting when."""
    for seq in range(1, int(seconds(30) / BEAT_INTERVAL)):
        if writer.is_closing():
            return
        writer.write(encode_frame(encode_record(Pong(seq))))
        sent.append(time.time())
        await asyncio.sleep(BEAT_INTERVAL)  # the pacing of the pongs


async def close_raw(writer: asyncio.StreamWriter, pongs: asyncio.Task[None]) -> None:
    pongs.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await pongs
    writer.close()
    with contextlib.suppress(ConnectionError):
        async with asyncio.timeout(seconds(5)):
            await writer.wait_closed()


# -- the tests -------------------------------------------------------------------------


def test_an_agent_with_a_slow_handler_is_cut_as_a_slow_consumer(spawn: Any) -> None:
    # The playground's heartbeat timeout is longer than CUT_WITHIN: an agent whose handlers
    # are behind stops reading, so it stops answering pings too, and a 1 s timeout would
    # race the slow-consumer cut this test is about.
    playground, address = start_playground(spawn, *patient(3.0), *SLOW_FLAGS)
    observer, pacer = start_bystanders(spawn, address)
    slow = start_worker(spawn, address, "Sluggard", "slow")  # 50 ms per Flood
    connected((observer, "observer"), (pacer, "pacer"), (slow, "slow"))
    stamp(pacer, r"^pacer pace start (\S+)$", seconds(20))
    flooder, flood_start = start_flood(spawn, address, *FLOODER_BEAT)
    cut_at, reason = closed(playground, "slow", flood_start, CUT_WITHIN + seconds(10))
    print(f"slow handler cut {cut_at - flood_start:.3f} s after the flood started: {reason}")
    assert reason.startswith("slow consumer"), reason
    assert cut_at - flood_start <= CUT_WITHIN
    first_line(playground, r"disconnecting \S+: slow consumer: ", seconds(1))
    assert_steady(observer, flood_start, playground)
    assert_flood_kept_its_connection(flooder)
    assert_only_cut(playground, "slow")


def test_a_stopped_agent_is_cut_and_nobody_else_notices(spawn: Any) -> None:
    playground, address = start_playground(spawn, *BEAT_FLAGS, *SLOW_FLAGS)
    observer, pacer = start_bystanders(spawn, address)
    stopped = start_worker(spawn, address, "Echoer", "slow")
    connected((observer, "observer"), (pacer, "pacer"), (stopped, "slow"))
    stamp(pacer, r"^pacer pace start (\S+)$", seconds(20))
    flooder, flood_start = start_flood(spawn, address, *FLOODER_BEAT)
    stopped_at = time.time()
    stopped.signal(signal.SIGSTOP)
    try:
        cut_at, reason = closed(playground, "slow", stopped_at, CUT_WITHIN + seconds(10))
        print(f"stopped agent cut {cut_at - stopped_at:.3f} s after SIGSTOP: {reason}")
        # Stopped, it neither reads nor answers pings: whichever comes first cuts it.
        assert reason.startswith(("slow consumer", "heartbeat timeout")), reason
        assert cut_at - stopped_at <= CUT_WITHIN
        assert_steady(observer, flood_start, playground)
        assert_flood_kept_its_connection(flooder)
        assert_only_cut(playground, "slow")
    finally:
        stopped.signal(signal.SIGCONT)
        stopped.kill()


async def test_a_raw_client_that_never_reads_is_cut_despite_its_pongs(spawn: Any) -> None:
    playground, address = start_playground(spawn, *BEAT_FLAGS, *SLOW_FLAGS)
    observer, pacer = start_bystanders(spawn, address)
    connected((observer, "observer"), (pacer, "pacer"))
    stamp(pacer, r"^pacer pace start (\S+)$", seconds(20))
    flooder, flood_start = start_flood(spawn, address, *FLOODER_BEAT)
    joining = time.time()  # it is flooded from the moment it joins
    _, writer, _ = await raw_client(int(address.rsplit(":", 1)[1]), "raw")
    sent: list[float] = []
    pongs = asyncio.create_task(pong_forever(writer, sent))
    try:
        wait = CUT_WITHIN + seconds(10)
        cut_at, reason = await asyncio.to_thread(closed, playground, "raw", joining, wait)
        print(f"raw client cut {cut_at - joining:.3f} s after joining the flood: {reason}")
        # Its pongs answer no ping: they do not count. It is cut as a slow consumer, or
        # as dead if its heartbeat timeout (1 s) runs out first.
        assert reason.startswith(("slow consumer", "heartbeat timeout")), reason
        assert cut_at - joining <= CUT_WITHIN
        assert any(cut_at - 2 * BEAT_INTERVAL - 0.1 <= t <= cut_at for t in sent), sent
        await asyncio.to_thread(assert_steady, observer, flood_start, playground)
        await asyncio.to_thread(assert_flood_kept_its_connection, flooder)
        assert_only_cut(playground, "raw")
    finally:
        await close_raw(writer, pongs)


async def test_unsolicited_pongs_do_not_keep_a_client_that_never_reads_alive(
    spawn: Any,
) -> None:
    playground, address = start_playground(spawn, *BEAT_FLAGS)
    joining = time.time()
    _, writer, _ = await raw_client(int(address.rsplit(":", 1)[1]), "raw")
    sent: list[float] = []
    pongs = asyncio.create_task(pong_forever(writer, sent))
    try:
        wait = BEAT_TIMEOUT + seconds(10)
        cut_at, reason = await asyncio.to_thread(closed, playground, "raw", joining, wait)
        assert reason.startswith("heartbeat timeout"), reason
        assert cut_at - joining <= BEAT_TIMEOUT + seconds(1)
        assert len(sent) >= 3  # it ponged all along
    finally:
        await close_raw(writer, pongs)


class Controller(BaseAgent):
    """The test's own agent: it only sends commands."""

    def __init__(self) -> None:
        super().__init__("controller", role="controller")


async def test_drop_policy_keeps_a_slow_agent_and_counts_what_it_lost(spawn: Any) -> None:
    # Slow for 20 Floods (1 s), then quick: it falls behind, then catches up. The long
    # heartbeat timeout lets it hold back reading that long without being declared dead.
    playground, address = start_playground(
        spawn, *patient(5.0), "--slow-consumer", "drop", *SLOW_FLAGS
    )
    slow = start_worker(spawn, address, "Sluggard", "slow", "--option", "slow_count=20")
    connected((slow, "slow"))
    flooder, flood_start = start_flood(spawn, address, *FLOODER_BEAT)
    await asyncio.to_thread(assert_flood_kept_its_connection, flooder)
    # Once it has caught up, the playground tells it how many messages it lost, and
    # what is sent to it from then on reaches it.
    try:
        told = await asyncio.to_thread(
            first_line, slow, r"the peer dropped (\d+) message", seconds(10)
        )
    except TimeoutError as exc:
        why = f"it was never told of its drops; the playground:\n{events(playground)}"
        raise AssertionError(why) from exc
    controller = Controller()
    await controller.connect(address, settings=None)
    try:
        # The flood may still be draining into its queue: a command that finds it
        # congested is dropped too (that is the policy), so the probe is sent again.
        for attempt in range(10):
            await controller.send_message("slow", Command("stats"))
            try:
                stats = await asyncio.to_thread(
                    first_line, slow, r"^slow stats handled \d+ upstream (\d+)$", seconds(1)
                )
                break
            except TimeoutError:
                if attempt == 9:
                    raise
    finally:
        await controller.stop()
    upstream = int(stats.group(1))
    status_cli = spawn("-m", "ceylon", "status", "--connect", address, "--once", "--json")
    line = await asyncio.to_thread(status_cli.wait_for_line, r'^\{"playground".*', seconds(20))
    status = json.loads(line.group(0))
    drops = status["drops"]
    print(f"drop policy: playground {drops}; slow agent told of {told.group(1)} first, "
          f"{upstream} in all")  # fmt: skip
    assert "slow" in {a["name"] for a in status["agents"]}  # it kept its connection
    assert "slow consumers disconnected" not in drops
    assert 0 < upstream <= drops.get("dropped for slow consumers", 0)
    assert_only_cut(playground)


def test_a_consumer_that_catches_up_within_the_grace_period_is_not_cut(spawn: Any) -> None:
    # Slow for 10 Floods (0.5 s), then quick: congested for less than the grace period.
    playground, address = start_playground(spawn, *patient(3.0), *SLOW_FLAGS)
    slow = start_worker(spawn, address, "Sluggard", "slow", "--option", "slow_count=10")
    connected((slow, "slow"))
    flooder, flood_start = start_flood(spawn, address, *FLOODER_BEAT)
    assert_flood_kept_its_connection(flooder)
    # A receiver still congested now would be cut within the grace period.
    try:
        cut = closed(playground, "slow", flood_start, GRACE + seconds(1))
    except TimeoutError:
        cut = None
    assert cut is None, events(playground)


def test_a_flood_sender_paused_for_the_grace_period_keeps_its_connection(spawn: Any) -> None:
    # Everybody on the fast test heartbeats (1 s), the grace period 1 s as well.
    playground, address = start_playground(spawn, *BEAT_FLAGS, *SLOW_FLAGS)
    slow = start_worker(spawn, address, "Sluggard", "slow")
    connected((slow, "slow"))
    flooder, flood_start = start_flood(spawn, address)
    cut_at, reason = closed(playground, "slow", flood_start, CUT_WITHIN + seconds(10))
    assert cut_at - flood_start <= CUT_WITHIN
    assert_flood_kept_its_connection(flooder)
    assert_only_cut(playground, "slow")
