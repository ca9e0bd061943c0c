"""Benchmark peers for NATS (nats-py against a local nats-server); one role per process.

    python scripts/benchpeers/nats_peers.py ROLE --port PORT [options]

The counterparts of the agent benchmarks: request/reply for the round trips, publish ->
subscribe for one-way messages, one subject heard by many connections for the broadcasts
(one NATS connection per simulated agent, as Ceylon has one connection per agent). The
payload is the msgpack of the agents' ``Tick(seq, sent_at, text='x' * 32)``: 62 bytes.
Roles that serve print ``ready``; measuring roles print one line ``result {json}``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import msgpack
import nats
from nats.aio.client import Client
from nats.aio.msg import Msg

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from common import HOST, percentiles, result  # noqa: E402

import transport  # noqa: E402

TEXT = "x" * 32
RTT_SUBJECT = "bench.rtt"
TICK_SUBJECT = "bench.tick"


def tick(seq: int) -> bytes:
    return msgpack.packb({"seq": seq, "sent_at": time.time(), "text": TEXT})


class Errors:
    """Counts what nats-py reports asynchronously (slow consumer drops among them)."""

    def __init__(self) -> None:
        self.count = 0
        self.last = ""

    async def record(self, error: Exception) -> None:  # nats-py wants a coroutine function
        self.count += 1
        self.last = repr(error)


async def connect(args: argparse.Namespace, errors: Errors | None = None) -> Client:
    return await nats.connect(
        f"nats://{HOST}:{args.port}",
        allow_reconnect=False,
        connect_timeout=10,
        error_cb=(errors or Errors()).record,
    )


async def sleep_until(epoch: float) -> None:
    delay = epoch - time.time()
    if delay > 0:
        await asyncio.sleep(delay)  # a start time agreed with the driver, not a sync


async def stay() -> None:
    await asyncio.sleep(3600)  # until the driver stops this process


# -- request / reply ---------------------------------------------------------------------


async def responder(args: argparse.Namespace) -> None:
    nc = await connect(args)

    async def answer(msg: Msg) -> None:
        await msg.respond(msg.data)

    await nc.subscribe(RTT_SUBJECT, cb=answer)
    await nc.flush()  # the subscription has reached the server
    print("ready", flush=True)
    await stay()


async def requester(args: argparse.Namespace) -> None:
    nc = await connect(args)
    unpackb = msgpack.unpackb
    samples = []
    for seq in range(args.count + args.warmup):
        started = time.perf_counter()
        reply = await nc.request(RTT_SUBJECT, tick(seq), timeout=10)
        got = unpackb(reply.data)["seq"]
        elapsed = time.perf_counter() - started
        assert got == seq
        if seq >= args.warmup:
            samples.append(elapsed)
    result(**percentiles(samples))
    await nc.close()


# -- publish -> subscribe ----------------------------------------------------------------


async def subscriber(args: argparse.Namespace) -> None:
    """Counts ticks on one connection; reports msgs/s over the first --seconds."""
    errors = Errors()
    nc = await connect(args, errors)
    done = asyncio.Event()
    unpackb = msgpack.unpackb
    state = {"count": 0, "first": 0.0}

    async def count(msg: Msg) -> None:
        unpackb(msg.data)
        state["count"] += 1
        if state["count"] == 1:
            state["first"] = time.perf_counter()
        elif state["count"] % 1024 == 0 and not done.is_set():
            elapsed = time.perf_counter() - state["first"]
            if elapsed >= args.seconds:
                result(msgs_per_s=state["count"] / elapsed, count=state["count"],
                       seconds=elapsed, errors=errors.count, last_error=errors.last)  # fmt: skip
                done.set()

    await nc.subscribe(TICK_SUBJECT, cb=count)
    await nc.flush()
    print("ready", flush=True)
    async with asyncio.timeout(args.seconds * 4 + 60):
        await done.wait()
    await stay()


async def subscribers(args: argparse.Namespace) -> None:
    """--agents connections, one subscription each; each expects --count ticks."""
    errors = Errors()
    done = asyncio.Event()
    unpackb = msgpack.unpackb
    counts = [0] * args.agents
    last = [0.0] * args.agents
    remaining = [args.agents]

    def counter(i: int) -> Any:
        async def count(msg: Msg) -> None:
            unpackb(msg.data)
            counts[i] += 1
            if counts[i] == args.count:
                last[i] = time.time()
                remaining[0] -= 1
                if not remaining[0]:
                    done.set()

        return count

    clients = await asyncio.gather(*(connect(args, errors) for _ in range(args.agents)))
    for i, nc in enumerate(clients):
        await nc.subscribe(TICK_SUBJECT, cb=counter(i))
    await asyncio.gather(*(nc.flush() for nc in clients))
    print("ready", flush=True)
    try:
        async with asyncio.timeout(args.seconds):
            await done.wait()
    except TimeoutError:
        pass
    result(
        received=sum(counts),
        expected=args.count * args.agents,
        last_at=max(last) if done.is_set() else time.time(),
        errors=errors.count,
        last_error=errors.last,
    )
    await stay()


async def publisher(args: argparse.Namespace) -> None:
    """Publishes ticks as fast as it can: --count of them, or for up to 3x --seconds."""
    nc = await connect(args)
    await sleep_until(args.start_at)
    publish = nc.publish
    limit = args.count or 10**12
    stop_at = time.monotonic() + args.seconds * 3
    seq = 0
    while seq < limit and time.monotonic() < stop_at:
        for _ in range(min(256, limit - seq)):
            await publish(TICK_SUBJECT, tick(seq))
            seq += 1
        if seq % 4096 == 0:
            await nc.flush()  # the server has all so far: publishing never runs far ahead
        else:
            await asyncio.sleep(0)  # the client's flusher writes what is pending
    await nc.flush()
    result(sent=seq, started_at=args.start_at)
    await stay()


ROLES = {
    "responder": responder,
    "requester": requester,
    "subscriber": subscriber,
    "subscribers": subscribers,
    "publisher": publisher,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=sorted(ROLES))
    parser.add_argument("--port", type=int, required=True, help="the nats-server's port")
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--agents", type=int, default=1)
    parser.add_argument("--first", type=int, default=0, help="number of the first agent")
    parser.add_argument("--start-at", type=float, default=0.0, help="epoch seconds to start")
    args = parser.parse_args()
    assert len(tick(0)) == 62
    transport.run(ROLES[args.role](args))


if __name__ == "__main__":
    main()
