"""Benchmark peers for the agent layer; each role runs in its own process.

    python scripts/benchpeers/agent_peers.py ROLE [options]

Ceylon roles use the public agent API (`BasePlayGround`, `BaseAgent`, ``@on``); the
``raw-*`` roles are the baselines: plain asyncio streams + msgpack + the same framing.
Listening roles print ``listening on HOST:PORT``; measuring roles print one line
``result {json}``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import msgpack
from loguru import logger

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from common import HEADER, HOST, listening, percentiles, result  # noqa: E402

import transport  # noqa: E402
from ceylon import AgentDetail, BaseAgent, BasePlayGround, on  # noqa: E402

TEXT = "x" * 32


@dataclasses.dataclass
class Ping:
    seq: int


@dataclasses.dataclass
class Pong:
    seq: int


@dataclasses.dataclass
class Query:
    """Asked with `ask()`; answered with a Pong."""

    seq: int


@dataclasses.dataclass
class Tick:
    seq: int
    sent_at: float
    text: str


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def sleep_until(epoch: float) -> None:
    delay = epoch - time.time()
    if delay > 0:
        await asyncio.sleep(delay)  # a start time agreed with the driver, not a sync


async def join(agent: BaseAgent, args: argparse.Namespace) -> None:
    """Connect to the hub: over TCP (--port), or over NATS (--nats, --workspace)."""
    if args.nats:
        # agents of one process spread over the servers of a cluster
        servers = args.nats.split(",")
        turn = (args.first + id(agent)) % len(servers)
        await agent.connect(nats=servers[turn:] + servers[:turn], workspace=args.workspace)
    else:
        await agent.connect(f"{HOST}:{args.port}")


# -- ceylon: the playground -------------------------------------------------------------


class Hub(BasePlayGround):
    """Answers pings, counts ticks."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(name="hub", port=0, nats=args.nats or None, workspace=args.workspace)
        self.args = args
        self.ticks = 0
        self.first_tick = 0.0
        self.done = asyncio.Event()

    @on(Ping)
    async def ping(self, message: Ping, agent: AgentDetail) -> None:
        await self.send_message(agent.id, Pong(message.seq))

    @on(Tick)
    async def tick(self, message: Tick) -> None:
        self.ticks += 1
        if self.ticks == 1:
            self.first_tick = time.perf_counter()
        elif self.ticks % 1024 == 0 and not self.done.is_set():
            elapsed = time.perf_counter() - self.first_tick
            if elapsed >= self.args.seconds:
                result(msgs_per_s=self.ticks / elapsed, count=self.ticks, seconds=elapsed)
                self.done.set()


async def hub(args: argparse.Namespace) -> None:
    playground = Hub(args)
    await playground.start()
    listening(playground.port)  # on NATS: the port it would have had (unused)
    if args.agents:  # connect / idle measurements
        await playground.wait_for_agents(count=args.agents, timeout=120)
        joined_at = time.time()
        if args.start_at:
            result(seconds=joined_at - args.start_at, agents=args.agents, rss_mb=rss_mb())
        else:
            before, started = cpu_seconds(), time.monotonic()
            await asyncio.sleep(args.seconds)  # the measurement window itself
            used = cpu_seconds() - before
            result(cpu_percent=100 * used / (time.monotonic() - started), agents=args.agents)
    else:
        await playground.done.wait()
    await asyncio.sleep(3600)  # stay up until the driver stops this process


# -- ceylon: agents -------------------------------------------------------------------


class Pinger(BaseAgent):
    def __init__(self, name: str) -> None:
        super().__init__(name, role="pinger")
        self.reply: asyncio.Future[int] | None = None

    @on(Pong)
    async def pong(self, message: Pong) -> None:
        if self.reply is not None and not self.reply.done():
            self.reply.set_result(message.seq)


class Echo(BaseAgent):
    @on(Ping)
    async def ping(self, message: Ping, agent: AgentDetail) -> None:
        await self.send_message(agent.id, Pong(message.seq))

    @on(Query)
    async def query(self, message: Query) -> Pong:
        return Pong(message.seq)


async def pinger(args: argparse.Namespace) -> None:
    agent = Pinger("pinger")
    await join(agent, args)
    loop = asyncio.get_running_loop()
    samples = []
    for seq in range(args.count + args.warmup):
        agent.reply = loop.create_future()
        started = time.perf_counter()
        if args.ask:
            got = (await agent.ask(args.target, Query(seq))).seq
        else:
            await agent.send_message(args.target, Ping(seq))
            got = await agent.reply
        elapsed = time.perf_counter() - started
        assert got == seq
        if seq >= args.warmup:
            samples.append(elapsed)
    result(**percentiles(samples))
    await agent.stop()


async def echo(args: argparse.Namespace) -> None:
    agent = Echo("echo", role="echo")
    await join(agent, args)
    print("ready", flush=True)
    await asyncio.sleep(3600)  # serve until the driver stops this process


async def source(args: argparse.Namespace) -> None:
    agent = BaseAgent("source", role="source")
    await join(agent, args)
    await sleep_until(args.start_at)
    stop_at = time.monotonic() + args.seconds * 3
    seq = 0
    limit = args.count or 10**12
    while seq < limit and time.monotonic() < stop_at:
        for _ in range(min(256, limit - seq)):
            if args.target:
                await agent.send_message(args.target, Tick(seq, time.time(), TEXT))
            else:
                await agent.broadcast_message(Tick(seq, time.time(), TEXT))
            seq += 1
        await asyncio.sleep(0)
    result(sent=seq, started_at=args.start_at)
    await asyncio.sleep(3600)  # keep the link until the driver has its results


class Receiver(BaseAgent):
    def __init__(self, name: str, expect: int, done: asyncio.Event, counter: list[int]) -> None:
        super().__init__(name, role="receiver")
        self.expect = expect
        self.count = 0
        self.last = 0.0
        self._done = done
        self._counter = counter

    @on(Tick)
    async def tick(self, message: Tick) -> None:
        self.count += 1
        if self.count == self.expect:
            self.last = time.time()
            self._counter[0] += 1
            if self._counter[0] == self._counter[1]:
                self._done.set()


async def receivers(args: argparse.Namespace) -> None:
    done = asyncio.Event()
    counter = [0, args.agents]
    agents = [Receiver(f"r{args.first + i}", args.count, done, counter) for i in range(args.agents)]
    await asyncio.gather(*(join(a, args) for a in agents))
    print("ready", flush=True)
    try:
        async with asyncio.timeout(args.seconds):
            await done.wait()
    except TimeoutError:
        pass
    result(
        received=sum(a.count for a in agents),
        expected=args.count * args.agents,
        last_at=max(a.last for a in agents) if done.is_set() else time.time(),
    )
    await asyncio.sleep(3600)  # stay connected until the driver stops this process


class Sink(BaseAgent):
    """Counts the ticks sent to it by name; reports msgs/s over the first --seconds."""

    def __init__(self, seconds: float) -> None:
        super().__init__("sink", role="sink")
        self.seconds = seconds
        self.ticks = 0
        self.first_tick = 0.0
        self.done = asyncio.Event()

    @on(Tick)
    async def tick(self, message: Tick) -> None:
        self.ticks += 1
        if self.ticks == 1:
            self.first_tick = time.perf_counter()
        elif self.ticks % 1024 == 0 and not self.done.is_set():
            elapsed = time.perf_counter() - self.first_tick
            if elapsed >= self.seconds:
                result(msgs_per_s=self.ticks / elapsed, count=self.ticks, seconds=elapsed)
                self.done.set()


async def sink(args: argparse.Namespace) -> None:
    agent = Sink(args.seconds)
    await join(agent, args)
    print("ready", flush=True)
    async with asyncio.timeout(args.seconds * 4 + 60):
        await agent.done.wait()
    await asyncio.sleep(3600)  # stay connected until the driver stops this process


async def swarm(args: argparse.Namespace) -> None:
    agents = [BaseAgent(f"s{args.first + i}", role="idle") for i in range(args.agents)]
    print("ready", flush=True)
    await sleep_until(args.start_at)
    await asyncio.gather(*(join(a, args) for a in agents))
    print("connected", flush=True)
    await asyncio.sleep(3600)  # stay connected until the driver stops this process


# -- raw baselines ----------------------------------------------------------------------


def frames_of(buf: bytearray) -> tuple[list[bytes], int]:
    out, pos, end = [], 0, len(buf)
    while end - pos >= 4:
        (size,) = HEADER.unpack_from(buf, pos)
        if pos + 4 + size > end:
            break
        out.append(bytes(buf[pos + 4 : pos + 4 + size]))
        pos += 4 + size
    return out, pos


RELAY_ENDS = 2  # the raw relay joins two clients, index 0 and index 1


async def read_frame(reader: asyncio.StreamReader) -> Any:
    (size,) = HEADER.unpack(await reader.readexactly(4))
    return msgpack.unpackb(await reader.readexactly(size))


def write_frame(writer: asyncio.StreamWriter, message: Any) -> None:
    frame = msgpack.packb(message)
    writer.write(HEADER.pack(len(frame)) + frame)


async def join_relay(port: int, index: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connects to the raw relay as client `index`; returns once it reports ready."""
    reader, writer = await asyncio.open_connection(HOST, port)
    write_frame(writer, [index, "hello"])
    await writer.drain()
    ready = await read_frame(reader)
    if ready != [index, "ready"]:
        raise RuntimeError(f"raw relay answered {ready!r} to client {index}")
    return reader, writer


async def raw_relay(args: argparse.Namespace) -> None:
    """Frames are msgpack [target index, payload]; each is forwarded to that client.

    Handshake: each client's first frame is [its index, "hello"]. Once both ends are in,
    the relay sends each one [its index, "ready"], and only then starts relaying; no
    client sends before its ready, so no frame can name a client not yet registered.
    After each read, the relay waits for the clients it wrote to (drain), so a fast
    sender is held to the pace of its target.
    """
    joined: dict[int, asyncio.StreamWriter] = {}
    clients: list[asyncio.StreamWriter] = []  # by index, filled once both ends are in
    all_in = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index, hello = await read_frame(reader)
        if hello != "hello" or index in joined or not 0 <= index < RELAY_ENDS:
            writer.close()
            raise ValueError(f"raw relay: bad hello {[index, hello]!r}")
        joined[index] = writer
        if len(joined) == RELAY_ENDS:
            clients.extend(joined[i] for i in range(RELAY_ENDS))
            for i, client in enumerate(clients):  # both, before anything is relayed
                write_frame(client, [i, "ready"])
            all_in.set()
        await all_in.wait()
        buf = bytearray()
        while data := await reader.read(262144):
            buf += data
            frames, used = frames_of(buf)
            del buf[:used]
            targets = set()
            for frame in frames:
                target, _ = msgpack.unpackb(frame)
                clients[target].write(HEADER.pack(len(frame)) + frame)
                targets.add(target)
            for target in targets:
                await clients[target].drain()

    server = await asyncio.start_server(handle, HOST, 0)
    listening(server.sockets[0].getsockname()[1])
    await asyncio.sleep(3600)  # serve until the driver stops this process


async def raw_relay_pair(args: argparse.Namespace) -> None:
    """Client 0 pings client 1 through the relay; client 1 echoes back to 0."""
    (r0, w0), (r1, w1) = await asyncio.gather(join_relay(args.port, 0), join_relay(args.port, 1))

    samples = []
    for seq in range(args.count + args.warmup):
        started = time.perf_counter()
        frame = msgpack.packb([1, {"seq": seq}])
        w0.write(HEADER.pack(len(frame)) + frame)
        _, ping = await read_frame(r1)
        back = msgpack.packb([0, ping])
        w1.write(HEADER.pack(len(back)) + back)
        _, pong = await read_frame(r0)
        elapsed = time.perf_counter() - started
        assert pong["seq"] == seq
        if seq >= args.warmup:
            samples.append(elapsed)
    result(**percentiles(samples))


async def raw_relay_sink(args: argparse.Namespace) -> None:
    """Joins the relay as client 0, then counts the frames relayed to it; reports
    msgs/s over the first --seconds. Prints ready once its hello is sent; the relay
    answers it when the source has joined too."""
    reader, writer = await asyncio.open_connection(HOST, args.port)
    write_frame(writer, [0, "hello"])
    await writer.drain()
    print("ready", flush=True)
    if await read_frame(reader) != [0, "ready"]:
        raise RuntimeError("raw relay did not report ready to client 0")
    unpackb = msgpack.unpackb
    buf = bytearray()
    count, started = 0, 0.0
    deadline = time.monotonic() + args.seconds * 4 + 60
    while time.monotonic() < deadline:
        data = await reader.read(262144)
        if not data:
            break
        if not started:
            started = time.perf_counter()
        buf += data
        frames, used = frames_of(buf)
        del buf[:used]
        for frame in frames:
            unpackb(frame)
        count += len(frames)
        elapsed = time.perf_counter() - started
        if elapsed >= args.seconds:
            result(msgs_per_s=count / elapsed, count=count, seconds=elapsed)
            break
    await asyncio.sleep(3600)  # stay connected until the driver stops this process


async def raw_relay_source(args: argparse.Namespace) -> None:
    """Joins the relay as client 1; sends frames [0, tick] through it to the sink, for up
    to 3x --seconds."""
    reader, writer = await join_relay(args.port, 1)
    await sleep_until(args.start_at)
    pack = msgpack.Packer().pack
    stop_at = time.monotonic() + args.seconds * 3
    seq = 0
    try:
        while time.monotonic() < stop_at:
            frames = []
            for _ in range(256):
                payload = pack([0, {"seq": seq, "sent_at": time.time(), "text": TEXT}])
                frames.append(HEADER.pack(len(payload)))
                frames.append(payload)
                seq += 1
            writer.write(b"".join(frames))
            await writer.drain()
            await asyncio.sleep(0)
    except ConnectionError:
        pass
    result(sent=seq, started_at=args.start_at)
    await asyncio.sleep(3600)  # keep the connection until the driver has its results


async def raw_fanout(args: argparse.Namespace) -> None:
    """The first connection is the source; every frame it sends goes to all the others."""
    sinks: list[asyncio.StreamWriter] = []
    ready = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if (await reader.readexactly(1)) == b"S":
            await ready.wait()
            while data := await reader.read(262144):
                for sink in sinks:  # batched: whatever one read brought, in one write
                    sink.write(data)
                await asyncio.gather(*(s.drain() for s in sinks))
        else:
            sinks.append(writer)
            if len(sinks) == args.agents:
                ready.set()
            await reader.read()

    server = await asyncio.start_server(handle, HOST, 0)
    listening(server.sockets[0].getsockname()[1])
    await asyncio.sleep(3600)  # serve until the driver stops this process


async def raw_sinks(args: argparse.Namespace) -> None:
    async def sink() -> tuple[int, float]:
        reader, writer = await asyncio.open_connection(HOST, args.port)
        writer.write(b"R")
        buf = bytearray()
        count = 0
        while count < args.count:
            data = await reader.read(262144)
            if not data:
                break
            buf += data
            frames, used = frames_of(buf)
            del buf[:used]
            for frame in frames:
                msgpack.unpackb(frame)
            count += len(frames)
        return count, time.time()

    tasks = [asyncio.ensure_future(sink()) for _ in range(args.agents)]
    print("ready", flush=True)
    try:
        async with asyncio.timeout(args.seconds):
            done = await asyncio.gather(*tasks)
    except TimeoutError:
        done = [(0, time.time())]
    result(
        received=sum(c for c, _ in done),
        expected=args.count * args.agents,
        last_at=max(t for _, t in done),
    )
    await asyncio.sleep(3600)  # stay connected until the driver stops this process


async def raw_source(args: argparse.Namespace) -> None:
    reader, writer = await asyncio.open_connection(HOST, args.port)
    writer.write(b"S")
    await sleep_until(args.start_at)
    pack = msgpack.Packer().pack
    seq = 0
    while seq < args.count:
        frames = []
        for _ in range(min(256, args.count - seq)):
            payload = pack({"seq": seq, "sent_at": time.time(), "text": TEXT})
            frames.append(HEADER.pack(len(payload)))
            frames.append(payload)
            seq += 1
        writer.write(b"".join(frames))
        await writer.drain()
    result(sent=seq, started_at=args.start_at)
    await asyncio.sleep(3600)  # keep the connection until the driver has its results


async def raw_accept(args: argparse.Namespace) -> None:
    """Accepts connections; each sends a hello frame and gets one back."""
    joined = 0
    all_in = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal joined
        (size,) = HEADER.unpack(await reader.readexactly(4))
        hello = await reader.readexactly(size)
        writer.write(HEADER.pack(len(hello)) + hello)
        joined += 1
        if joined == args.agents:
            all_in.set()
        await reader.read()

    server = await asyncio.start_server(handle, HOST, 0, backlog=4096)
    listening(server.sockets[0].getsockname()[1])
    await all_in.wait()
    result(seconds=time.time() - args.start_at, agents=args.agents, rss_mb=rss_mb())
    await asyncio.sleep(3600)  # serve until the driver stops this process


async def raw_swarm(args: argparse.Namespace) -> None:
    print("ready", flush=True)
    await sleep_until(args.start_at)

    async def one(i: int) -> Any:
        reader, writer = await asyncio.open_connection(HOST, args.port)
        hello = msgpack.packb({"name": f"s{args.first + i}", "role": "idle"})
        writer.write(HEADER.pack(len(hello)) + hello)
        await reader.readexactly(4 + len(hello))
        return writer

    writers = await asyncio.gather(*(one(i) for i in range(args.agents)))
    print("connected", flush=True)
    await asyncio.sleep(3600)  # stay connected until the driver stops this process
    del writers


ROLES = {
    "hub": hub,
    "pinger": pinger,
    "echo": echo,
    "source": source,
    "receivers": receivers,
    "sink": sink,
    "swarm": swarm,
    "raw-relay": raw_relay,
    "raw-relay-pair": raw_relay_pair,
    "raw-relay-sink": raw_relay_sink,
    "raw-relay-source": raw_relay_source,
    "raw-fanout": raw_fanout,
    "raw-sinks": raw_sinks,
    "raw-source": raw_source,
    "raw-accept": raw_accept,
    "raw-swarm": raw_swarm,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=sorted(ROLES))
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--agents", type=int, default=0)
    parser.add_argument("--first", type=int, default=0, help="number of the first agent")
    parser.add_argument("--target", default="", help="name to send to (default: broadcast)")
    parser.add_argument("--ask", action="store_true", help="pinger: ask() instead of send")
    parser.add_argument("--start-at", type=float, default=0.0, help="epoch seconds to start")
    parser.add_argument("--nats", default="", help="NATS URLs: the Ceylon roles go over NATS")
    parser.add_argument("--workspace", default="default", help="the workspace (over NATS)")
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    logger.enable("ceylon")
    logger.enable("transport")
    transport.run(ROLES[args.role](args))


if __name__ == "__main__":
    main()
