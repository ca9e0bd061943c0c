"""Ceylon's benchmarks, each beside a raw asyncio + msgpack baseline measured in the same run.

    scripts/bench [SUITE ...] [--repeat N] [--seconds S]

Every figure comes from separate processes talking over 127.0.0.1, the listening one
pinned to the first CPU and the connecting one to the second (where there are two).
Each measurement is repeated (raw and Ceylon alternating, to share the machine's noise)
and the median is reported; the table gives both rows and the ratio, and whether each
target is met. The agents suite also measures NATS (nats-py against a local nats-server,
the server pinned like the other listeners) in the same rounds, beside the figures it
has a counterpart for; where a target says "> nats", Ceylon must beat it in that run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ceylon.natsserver import NatsCluster as NatsServers  # noqa: E402
from ceylon.natsserver import NatsServer, server_binary  # noqa: E402
from ceylon.process import Process, python_command  # noqa: E402
from transport import loop_name  # noqa: E402

TRANSPORT_PEERS = "scripts/benchpeers/transport_peers.py"


def pin(process: Process, cpu: int) -> None:
    """Keep a peer on one CPU, so raw and Ceylon runs share the machine the same way."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) >= 2:
        os.sched_setaffinity(process.pid, {cpus[cpu % len(cpus)]})


def run_pair(server_args: list[str], client_args: list[str], timeout: float) -> dict[str, float]:
    """Start a listening peer, then a connecting one; return the JSON result either prints."""
    with Process(python_command(*server_args), cwd=ROOT) as server:
        pin(server, 0)
        port = server.wait_for_line(r"listening on \S+:(\d+)", timeout=30).group(1)
        with Process(python_command(*client_args, "--port", port), cwd=ROOT) as client:
            pin(client, 1)
            for proc in (client, server):
                try:
                    line = proc.wait_for_line(r"^result ", timeout=timeout)
                except RuntimeError:
                    continue
                return dict(json.loads(line.string.removeprefix("result ")))
    raise RuntimeError(f"no result from {server_args} / {client_args}")


NAN = float("nan")


@dataclass
class Row:
    metric: str
    raw: float
    ceylon: float
    unit: str
    target: str
    ok: Callable[[float], bool]  # takes the ratio ceylon/raw
    nats: float = NAN  # the NATS counterpart, where there is one
    lower_is_better: bool = False  # round trips and times; rates are the other way
    beat_nats: bool = False  # met only if Ceylon beats NATS in the same run

    @property
    def ratio(self) -> float:
        return self.ceylon / self.raw if self.raw == self.raw and self.raw else NAN

    @property
    def nats_ratio(self) -> float:
        return self.ceylon / self.nats if self.nats == self.nats and self.nats else NAN

    @property
    def beats_nats(self) -> bool | None:
        """Whether Ceylon did better than NATS; None with no NATS figure."""
        if self.nats != self.nats or self.ceylon != self.ceylon:
            return None
        return self.ceylon < self.nats if self.lower_is_better else self.ceylon > self.nats

    @property
    def met(self) -> bool:
        return bool(self.ok(self.ratio)) and (not self.beat_nats or self.beats_nats is True)


def transport_suite(args: argparse.Namespace) -> list[Row]:
    samples: dict[str, dict[str, list[float]]] = {"raw": {}, "ceylon": {}}
    for rep in range(args.repeat):
        for impl in ("raw", "ceylon"):
            print(f"  transport round trip, {impl}, run {rep + 1}/{args.repeat}", file=sys.stderr)
            rtt = run_pair(
                [TRANSPORT_PEERS, impl, "echo-server"],
                [TRANSPORT_PEERS, impl, "rtt-client", "--count", str(args.rtt_count)],
                timeout=120,
            )
            print(f"  transport one-way, {impl}, run {rep + 1}/{args.repeat}", file=sys.stderr)
            oneway = run_pair(
                [TRANSPORT_PEERS, impl, "sink", "--seconds", str(args.seconds)],
                [TRANSPORT_PEERS, impl, "source", "--seconds", str(args.seconds)],
                timeout=args.seconds * 4 + 30,
            )
            for key, value in (
                ("p50", rtt["p50_us"]),
                ("p99", rtt["p99_us"]),
                ("oneway", oneway["msgs_per_s"]),
            ):
                samples[impl].setdefault(key, []).append(value)
    med = {impl: {k: statistics.median(v) for k, v in d.items()} for impl, d in samples.items()}
    return [
        Row(
            "round trip p50",
            med["raw"]["p50"],
            med["ceylon"]["p50"],
            "us",
            "<= 1.3x raw",
            lambda r: r <= 1.3,
        ),
        Row(
            "round trip p99",
            med["raw"]["p99"],
            med["ceylon"]["p99"],
            "us",
            "(reported)",
            lambda r: True,
        ),
        Row(
            "one-way msgs/s (62 B)",
            med["raw"]["oneway"],
            med["ceylon"]["oneway"],
            "msg/s",
            ">= 0.7x raw",
            lambda r: r >= 0.7,
        ),
    ]


AGENT_PEERS = "scripts/benchpeers/agent_peers.py"


class Cluster:
    """Processes of one measurement: a listener (pinned to CPU 0) and peers (CPU 1)."""

    def __init__(self, listener: list[str]) -> None:
        self.children: list[Process] = []
        self.listener = self.start(listener, cpu=0)
        match = self.listener.wait_for_line(r"listening on \S+:(\d+)", timeout=30)
        self.port = match.group(1)

    def start(self, args: list[str], cpu: int = 1) -> Process:
        process = Process(python_command(*args), cwd=ROOT)
        self.children.append(process)
        pin(process, cpu)
        return process

    def peer(self, args: list[str], ready: str | None = None) -> Process:
        process = self.start([*args, "--port", self.port])
        if ready is not None:
            process.wait_for_line(ready, timeout=60)
        return process

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        for child in self.children:
            child.stop()


#: Slow subscribers are measured, not cut off: a generous per-connection buffer.
NATS_CONFIG = "max_pending: 256MB\n"


class NatsCluster(Cluster):
    """A nats-server (pinned to CPU 0, as a listener) and NATS peers (CPU 1)."""

    def __init__(self) -> None:
        self.children = []
        self.server = NatsServer(NATS_CONFIG, cpu=0).start()
        self.port = str(self.server.port)

    def __exit__(self, *exc: object) -> None:
        try:
            super().__exit__(*exc)
        finally:
            self.server.close()


class CeylonOnNats(Cluster):
    """Ceylon over NATS: nats-server(s) pinned to CPU 0 with the hub (a playground on
    NATS), the agents on CPU 1; `servers` 3 makes a routed cluster with JetStream."""

    def __init__(self, hub: list[str], servers: int = 1) -> None:
        self.children = []
        self.workspace = f"bench{os.getpid()}{int(time.time() * 1000) % 100000}"
        if servers == 1:
            self.nats: NatsServer | NatsServers = NatsServer(NATS_CONFIG, cpu=0).start()
            self.url = self.nats.url
        else:
            self.nats = NatsServers(servers).start()
            for server in self.nats.servers:
                pin(server, 0)
            self.url = self.nats.url
        # the hub is a client of NATS like the agents: it shares their CPU
        self.listener = self.start([*hub, *self.reach()], cpu=1)
        self.listener.wait_for_line(r"listening on \S+:(\d+)", timeout=60)
        self.port = "0"

    def reach(self) -> list[str]:
        return ["--nats", self.url, "--workspace", self.workspace]

    def peer(self, args: list[str], ready: str | None = None) -> Process:
        process = self.start([*args, *self.reach()])
        if ready is not None:
            process.wait_for_line(ready, timeout=60)
        return process

    def __exit__(self, *exc: object) -> None:
        try:
            super().__exit__(*exc)
        finally:
            self.nats.close()


NATS_PEERS = "scripts/benchpeers/nats_peers.py"


def result_of(process: Process, timeout: float) -> dict[str, float]:
    line = process.wait_for_line(r"^result ", timeout=timeout)
    return dict(json.loads(line.string.removeprefix("result ")))


def agent_rtt(impl: str, count: int) -> dict[str, float]:
    if impl == "raw":
        return run_pair(
            [TRANSPORT_PEERS, "raw", "echo-server"],
            [TRANSPORT_PEERS, "raw", "rtt-client", "--count", str(count)],
            timeout=120,
        )
    with Cluster([AGENT_PEERS, "hub"]) as cluster:
        pinger = cluster.peer([AGENT_PEERS, "pinger", "--target", "hub", "--count", str(count)])
        return result_of(pinger, 120)


def relay_rtt(impl: str, count: int) -> dict[str, float]:
    if impl == "raw":
        with Cluster([AGENT_PEERS, "raw-relay"]) as cluster:
            pair = cluster.peer([AGENT_PEERS, "raw-relay-pair", "--count", str(count)])
            return result_of(pair, 120)
    with Cluster([AGENT_PEERS, "hub"]) as cluster:
        cluster.peer([AGENT_PEERS, "echo"], ready="^ready")
        pinger = cluster.peer([AGENT_PEERS, "pinger", "--target", "echo", "--count", str(count)])
        return result_of(pinger, 120)


def ask_rtt(count: int) -> dict[str, float]:
    """Sequential `ask()` from one worker to another through the hub."""
    with Cluster([AGENT_PEERS, "hub"]) as cluster:
        cluster.peer([AGENT_PEERS, "echo"], ready="^ready")
        asker = cluster.peer(
            [AGENT_PEERS, "pinger", "--target", "echo", "--ask", "--count", str(count)]
        )
        return result_of(asker, 120)


def one_way_to_handler(impl: str, seconds: float) -> float:
    if impl == "raw":
        return run_pair(
            [TRANSPORT_PEERS, "raw", "sink", "--seconds", str(seconds)],
            [TRANSPORT_PEERS, "raw", "source", "--seconds", str(seconds)],
            timeout=seconds * 4 + 30,
        )["msgs_per_s"]
    with Cluster([AGENT_PEERS, "hub", "--seconds", str(seconds)]) as cluster:
        cluster.peer([AGENT_PEERS, "source", "--target", "hub", "--seconds", str(seconds),
                      "--start-at", str(time.time() + 1)])  # fmt: skip
        return result_of(cluster.listener, seconds * 4 + 30)["msgs_per_s"]


def relay_one_way(impl: str, seconds: float) -> float:
    """Msgs/s from one worker to another through the hub, counted at the receiver."""
    start_at = str(time.time() + 1)
    if impl == "raw":
        with Cluster([AGENT_PEERS, "raw-relay"]) as cluster:
            sink = cluster.peer([AGENT_PEERS, "raw-relay-sink", "--seconds", str(seconds)],
                                ready="^ready")  # fmt: skip
            cluster.peer([AGENT_PEERS, "raw-relay-source", "--seconds", str(seconds),
                          "--start-at", start_at])  # fmt: skip
            return result_of(sink, seconds * 4 + 30)["msgs_per_s"]
    with Cluster([AGENT_PEERS, "hub"]) as cluster:
        sink = cluster.peer([AGENT_PEERS, "sink", "--seconds", str(seconds)], ready="^ready")
        cluster.peer([AGENT_PEERS, "source", "--target", "sink", "--seconds", str(seconds),
                      "--start-at", start_at])  # fmt: skip
        return result_of(sink, seconds * 4 + 30)["msgs_per_s"]


def nats_rtt(count: int) -> dict[str, float]:
    """Sequential request/reply through nats-server: requester -> server -> responder."""
    with NatsCluster() as cluster:
        cluster.peer([NATS_PEERS, "responder"], ready="^ready")
        requester = cluster.peer([NATS_PEERS, "requester", "--count", str(count)])
        return result_of(requester, 120)


def nats_one_way(seconds: float) -> float:
    """Publish -> subscribe msgs/s, counted at the subscriber."""
    with NatsCluster() as cluster:
        sub = cluster.peer([NATS_PEERS, "subscriber", "--seconds", str(seconds)], ready="^ready")
        cluster.peer([NATS_PEERS, "publisher", "--seconds", str(seconds),
                      "--start-at", str(time.time() + 1)])  # fmt: skip
        found = result_of(sub, seconds * 4 + 30)
        if found.get("errors"):
            print(f"  nats subscriber reported {found['errors']} errors, last "
                  f"{found.get('last_error')}", file=sys.stderr)  # fmt: skip
        return found["msgs_per_s"]


def spread(total: int, processes: int) -> list[tuple[int, int]]:
    """(first index, count) per process, `total` agents over at most `processes`."""
    processes = min(processes, total)
    sizes = [total // processes + (i < total % processes) for i in range(processes)]
    return [(sum(sizes[:i]), size) for i, size in enumerate(sizes)]


def fan_out(impl: str, receivers: int, messages: int, servers: int = 0) -> tuple[float, int, int]:
    """Deliveries/s of `messages` broadcast to `receivers` agents, and received/expected.

    `impl` "ceylon" with `servers` > 0 runs Ceylon over NATS (that many servers)."""
    peers, receiver_role, source_role = {
        "ceylon": (AGENT_PEERS, "receivers", "source"),
        "raw": (AGENT_PEERS, "raw-sinks", "raw-source"),
        "nats": (NATS_PEERS, "subscribers", "publisher"),
    }[impl]
    cluster: Cluster
    if impl == "nats":
        cluster = NatsCluster()
    elif servers:
        cluster = CeylonOnNats([AGENT_PEERS, "hub"], servers)
    else:
        cluster = Cluster([AGENT_PEERS, "hub"] if impl == "ceylon" else [
            AGENT_PEERS, "raw-fanout", "--agents", str(receivers)])  # fmt: skip
    with cluster:
        groups = [
            cluster.peer([peers, receiver_role, "--agents", str(size), "--first", str(first),
                          "--count", str(messages), "--seconds", "120"], ready="^ready")
            for first, size in spread(receivers, 4)
        ]  # fmt: skip
        start_at = time.time() + 1.0
        source = cluster.peer([peers, source_role, "--count", str(messages),
                               "--start-at", str(start_at)])  # fmt: skip
        results = [result_of(g, 150) for g in groups]
        result_of(source, 30)
    received = int(sum(r["received"] for r in results))
    expected = int(sum(r["expected"] for r in results))
    elapsed = max(r["last_at"] for r in results) - start_at
    return received / elapsed, received, expected


def connect_many(impl: str, agents: int) -> dict[str, float]:
    start_at = time.time() + 3.0
    hub = [AGENT_PEERS, "hub" if impl == "ceylon" else "raw-accept", "--agents", str(agents),
           "--start-at", str(start_at)]  # fmt: skip
    with Cluster(hub) as cluster:
        for first, size in spread(agents, 4):
            cluster.peer([AGENT_PEERS, "swarm" if impl == "ceylon" else "raw-swarm",
                          "--agents", str(size), "--first", str(first),
                          "--start-at", str(start_at)], ready="^ready")  # fmt: skip
        return result_of(cluster.listener, 120)


def idle_cpu(agents: int, seconds: float) -> float:
    with Cluster([AGENT_PEERS, "hub", "--agents", str(agents), "--seconds", str(seconds)]) as c:
        for first, size in spread(agents, 2):
            c.peer([AGENT_PEERS, "swarm", "--agents", str(size), "--first", str(first),
                    "--start-at", "0"])  # fmt: skip
        return result_of(c.listener, seconds + 120)["cpu_percent"]


def agents_suite(args: argparse.Namespace) -> list[Row]:
    impls = ("raw", "ceylon", "nats")
    samples: dict[str, dict[str, list[float]]] = {impl: {} for impl in impls}
    lost: dict[tuple[str, int], int] = {}

    def add(impl: str, key: str, value: float) -> None:
        samples[impl].setdefault(key, []).append(value)

    for rep in range(args.repeat):
        for impl in impls:
            print(f"  agents, {impl}, run {rep + 1}/{args.repeat}", file=sys.stderr)
            if impl == "nats":
                rtt = nats_rtt(args.rtt_count)
                for key in ("rtt", "relay", "ask"):  # one figure stands beside each round trip
                    add(impl, f"{key}50", rtt["p50_us"])
                    add(impl, f"{key}99", rtt["p99_us"])
                oneway = nats_one_way(args.seconds)
                add(impl, "oneway", oneway)  # pub -> sub beside both one-way rows
                add(impl, "relay_oneway", oneway)
            else:
                rtt = agent_rtt(impl, args.rtt_count)
                add(impl, "rtt50", rtt["p50_us"])
                add(impl, "rtt99", rtt["p99_us"])
                relay = relay_rtt(impl, args.rtt_count)
                add(impl, "relay50", relay["p50_us"])
                add(impl, "relay99", relay["p99_us"])
                if impl == "ceylon":
                    asked = ask_rtt(args.rtt_count)
                    add(impl, "ask50", asked["p50_us"])
                    add(impl, "ask99", asked["p99_us"])
                add(impl, "oneway", one_way_to_handler(impl, args.seconds))
                add(impl, "relay_oneway", relay_one_way(impl, args.seconds))
            for receivers, messages in ((10, 20_000), (100, 4_000)):
                rate, received, expected = fan_out(impl, receivers, messages)
                add(impl, f"fan{receivers}", rate)
                if received != expected:
                    key = (impl, receivers)
                    lost[key] = lost.get(key, 0) + expected - received
            if impl != "nats":
                joined = connect_many(impl, 1000)
                add(impl, "join", joined["seconds"])
                add(impl, "rss", joined["rss_mb"])
    med = {impl: {k: statistics.median(v) for k, v in d.items()} for impl, d in samples.items()}
    cpu = idle_cpu(100, 10.0)
    raw, cey, nat = med["raw"], med["ceylon"], med["nats"]

    def none_lost(receivers: int) -> bool:  # Ceylon's, and the baseline's to be a baseline
        return not lost.get(("ceylon", receivers)) and not lost.get(("raw", receivers))

    rows = [
        Row("playground<->worker p50", raw["rtt50"], cey["rtt50"], "us", "<= 1.5x raw, < nats",
            lambda r: r <= 1.5, nats=nat["rtt50"], lower_is_better=True, beat_nats=True),
        Row("playground<->worker p99", raw["rtt99"], cey["rtt99"], "us", "(reported)",
            lambda r: True, nats=nat["rtt99"], lower_is_better=True),
        Row("worker->pg->worker p50", raw["relay50"], cey["relay50"], "us",
            "<= 1.3x raw, < nats", lambda r: r <= 1.3, nats=nat["relay50"],
            lower_is_better=True, beat_nats=True),
        Row("worker->pg->worker p99", raw["relay99"], cey["relay99"], "us", "(reported)",
            lambda r: True, nats=nat["relay99"], lower_is_better=True),
        Row("ask worker->pg->worker p50", raw["relay50"], cey["ask50"], "us",
            "(reported), < nats", lambda r: True, nats=nat["ask50"], lower_is_better=True,
            beat_nats=True),
        Row("ask worker->pg->worker p99", raw["relay99"], cey["ask99"], "us", "(reported)",
            lambda r: True, nats=nat["ask99"], lower_is_better=True),
        Row("one-way into @on (msg/s)", raw["oneway"], cey["oneway"], "msg/s",
            ">= 0.6x raw, > nats", lambda r: r >= 0.6, nats=nat["oneway"], beat_nats=True),
        Row("worker->pg->worker one-way (msg/s)", raw["relay_oneway"], cey["relay_oneway"],
            "msg/s", ">= 0.5x raw, > nats", lambda r: r >= 0.5, nats=nat["relay_oneway"],
            beat_nats=True),
        Row("broadcast to 10", raw["fan10"], cey["fan10"], "dlv/s", ">= 0.7x, 0 lost, > nats",
            lambda r: r >= 0.7 and none_lost(10), nats=nat["fan10"], beat_nats=True),
        Row("broadcast to 100", raw["fan100"], cey["fan100"], "dlv/s",
            ">= 0.7x, 0 lost, > nats", lambda r: r >= 0.7 and none_lost(100),
            nats=nat["fan100"], beat_nats=True),
        Row("1,000 agents join (s)", raw["join"], cey["join"], "s", "< 1 s",
            lambda r, v=cey["join"]: v < 1.0, lower_is_better=True),
        Row("playground RSS, 1,000 agents", raw["rss"], cey["rss"], "MB", "< 60 MB",
            lambda r, v=cey["rss"]: v < 60.0, lower_is_better=True),
        Row("CPU, 100 idle agents", NAN, cpu, "%core", "< 1%",
            lambda r, v=cpu: v < 1.0, lower_is_better=True),
    ]  # fmt: skip
    if lost:
        print("  LOST: " + "; ".join(f"{impl} to {n}: {count} lost (over all runs)"
                                     for (impl, n), count in lost.items()))  # fmt: skip
    return rows


def on_nats_rtt(count: int, target: str) -> dict[str, float]:
    """Sequential round trips over NATS from a worker to the hub (`target` "hub") or to
    another worker ("echo")."""
    with CeylonOnNats([AGENT_PEERS, "hub"]) as cluster:
        if target == "echo":
            cluster.peer([AGENT_PEERS, "echo"], ready="^ready")
        pinger = cluster.peer([AGENT_PEERS, "pinger", "--target", target, "--count", str(count)])
        return result_of(pinger, 120)


def on_nats_one_way(seconds: float) -> float:
    """Msgs/s from one worker to another over NATS, counted at the receiver."""
    with CeylonOnNats([AGENT_PEERS, "hub"]) as cluster:
        sink = cluster.peer([AGENT_PEERS, "sink", "--seconds", str(seconds)], ready="^ready")
        cluster.peer([AGENT_PEERS, "source", "--target", "sink", "--seconds", str(seconds),
                      "--start-at", str(time.time() + 1)])  # fmt: skip
        return result_of(sink, seconds * 4 + 30)["msgs_per_s"]


def nats_suite(args: argparse.Namespace) -> list[Row]:
    """Ceylon over NATS beside raw nats-py (the "raw" column) and the TCP hub (the third
    column), in the same run."""
    impls = ("nats", "ceylon", "tcp")
    samples: dict[str, dict[str, list[float]]] = {impl: {} for impl in impls}
    lost: dict[str, int] = {}

    def add(impl: str, key: str, value: float) -> None:
        samples[impl].setdefault(key, []).append(value)

    def fan(impl: str, key: str, rate: float, received: int, expected: int) -> None:
        add(impl, key, rate)
        if received != expected:
            lost[f"{impl} {key}"] = lost.get(f"{impl} {key}", 0) + expected - received

    for rep in range(args.repeat):
        for impl in impls:
            print(f"  nats suite, {impl}, run {rep + 1}/{args.repeat}", file=sys.stderr)
            if impl == "nats":
                rtt = nats_rtt(args.rtt_count)
                for key in ("rtt", "relay"):  # request/reply: client -> server -> client
                    add(impl, f"{key}50", rtt["p50_us"])
                    add(impl, f"{key}99", rtt["p99_us"])
                add(impl, "oneway", nats_one_way(args.seconds))
                for receivers, messages in ((10, 20_000), (100, 4_000)):
                    fan(impl, f"fan{receivers}", *fan_out("nats", receivers, messages))
                add(impl, "fan100c", samples[impl]["fan100"][-1])  # one server, as given
            elif impl == "ceylon":
                for key, target in (("rtt", "hub"), ("relay", "echo")):
                    rtt = on_nats_rtt(args.rtt_count, target)
                    add(impl, f"{key}50", rtt["p50_us"])
                    add(impl, f"{key}99", rtt["p99_us"])
                add(impl, "oneway", on_nats_one_way(args.seconds))
                for receivers, messages in ((10, 20_000), (100, 4_000)):
                    fan(impl, f"fan{receivers}", *fan_out("ceylon", receivers, messages, 1))
                fan(impl, "fan100c", *fan_out("ceylon", 100, 4_000, 3))
            else:
                rtt = agent_rtt("ceylon", args.rtt_count)
                add(impl, "rtt50", rtt["p50_us"])
                add(impl, "rtt99", rtt["p99_us"])
                relay = relay_rtt("ceylon", args.rtt_count)
                add(impl, "relay50", relay["p50_us"])
                add(impl, "relay99", relay["p99_us"])
                add(impl, "oneway", relay_one_way("ceylon", args.seconds))
                for receivers, messages in ((10, 20_000), (100, 4_000)):
                    fan(impl, f"fan{receivers}", *fan_out("ceylon", receivers, messages))
                add(impl, "fan100c", samples[impl]["fan100"][-1])
    med = {impl: {k: statistics.median(v) for k, v in d.items()} for impl, d in samples.items()}
    raw, cey, tcp = med["nats"], med["ceylon"], med["tcp"]
    if lost:
        print("  LOST: " + "; ".join(f"{what}: {n}" for what, n in lost.items()))

    def whole(key: str) -> bool:
        return not lost.get(f"ceylon {key}")

    rows = [
        Row("playground<->worker p50", raw["rtt50"], cey["rtt50"], "us", "<= 1.3x nats-py",
            lambda r: r <= 1.3, nats=tcp["rtt50"], lower_is_better=True),
        Row("playground<->worker p99", raw["rtt99"], cey["rtt99"], "us", "(reported)",
            lambda r: True, nats=tcp["rtt99"], lower_is_better=True),
        Row("worker->worker p50", raw["relay50"], cey["relay50"], "us", "<= 1.3x nats-py",
            lambda r: r <= 1.3, nats=tcp["relay50"], lower_is_better=True),
        Row("worker->worker p99", raw["relay99"], cey["relay99"], "us", "(reported)",
            lambda r: True, nats=tcp["relay99"], lower_is_better=True),
        Row("worker->worker one-way (msg/s)", raw["oneway"], cey["oneway"], "msg/s",
            ">= nats-py / 1.3", lambda r: r >= 1 / 1.3, nats=tcp["oneway"]),
        Row("broadcast to 10", raw["fan10"], cey["fan10"], "dlv/s",
            ">= nats-py / 1.3, 0 lost", lambda r: r >= 1 / 1.3 and whole("fan10"),
            nats=tcp["fan10"]),
        Row("broadcast to 100", raw["fan100"], cey["fan100"], "dlv/s",
            ">= nats-py / 1.3, 0 lost", lambda r: r >= 1 / 1.3 and whole("fan100"),
            nats=tcp["fan100"]),
        Row("broadcast to 100, 3-node cluster", raw["fan100"], cey["fan100c"], "dlv/s",
            ">= tcp hub, 0 lost", lambda r, v=cey["fan100c"], t=tcp["fan100"]: v >= t
            and whole("fan100c"), nats=tcp["fan100"]),
    ]  # fmt: skip
    return rows


TASK_PEERS = "scripts/benchpeers/task_peers.py"


def task_run(
    tasks: int, duration: float, workers: int, slots: int, state: str | None = None
) -> dict[str, float]:
    hub = [TASK_PEERS, "--tasks", str(tasks), "--duration", str(duration),
           "--workers", str(workers)]  # fmt: skip
    if state is not None:
        hub += ["--state", state]
    with Cluster(hub) as cluster:
        for n in range(workers):
            cluster.start(
                ["-m", "ceylon", "worker", "--connect", f"127.0.0.1:{cluster.port}",
                 "--agent", "ceylon.task:TaskExecutionAgent", "--role", "processor",
                 "--name", f"worker{n}", "--option", f"max_concurrent_tasks={slots}"],
                cpu=1,
            )  # fmt: skip
        return result_of(cluster.listener, 600)


def restart_run(tasks: int, state: str) -> float:
    with Cluster([TASK_PEERS, "--restart", str(tasks), "--state", state]) as cluster:
        return result_of(cluster.listener, 600)["first_assignment_s"]


def tasks_suite(args: argparse.Namespace) -> list[Row]:
    throughput, journaled, makespan, restarts = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="ceylon-bench-") as tmp:
        for rep in range(args.repeat):
            print(f"  tasks, run {rep + 1}/{args.repeat}", file=sys.stderr)
            run = task_run(args.task_count, 0.0, 4, 100)
            if run["completed"] != run["expected"]:
                raise SystemExit(f"task run lost tasks: {run}")
            throughput.append(run["tasks_per_s"])
            db = str(Path(tmp) / f"run{rep}.db")
            run = task_run(args.task_count, 0.0, 4, 100, state=db)
            if run["completed"] != run["expected"]:
                raise SystemExit(f"journaled task run lost tasks: {run}")
            journaled.append(run["tasks_per_s"])
            makespan.append(task_run(400, 0.05, 4, 5)["makespan"])
            restarts.append(restart_run(100_000, str(Path(tmp) / f"restart{rep}.db")))
    rate, span = statistics.median(throughput), statistics.median(makespan)
    on_disk, restart = statistics.median(journaled), statistics.median(restarts)
    bound = 400 * 0.05 / (4 * 5)
    return [
        Row(f"zero-duration tasks/s ({args.task_count:,})", float("nan"), rate, "task/s",
            ">= 20,000", lambda r, v=rate: v >= 20_000),
        Row(f"  journaled (--state file), {on_disk / rate:.2f}x in-memory", float("nan"),
            on_disk, "task/s", ">= 0.7x in-memory, >= 20,000",
            lambda r, v=on_disk: v >= 0.7 * rate and v >= 20_000),
        Row("restart to first reassignment, 100,000-task journal", float("nan"), restart, "s",
            "< 2", lambda r, v=restart: v < 2.0),
        Row("makespan 400 x 50 ms, 4x5", float("nan"), span, "s",
            f"<= {1.1 * bound:.2f} (1.1x)", lambda r, v=span: v <= 1.1 * bound),
    ]  # fmt: skip


def meetings_dir() -> Path:
    shared = ROOT.parent / "shared" / "meetings"
    return shared if (shared / "score.py").exists() else ROOT / "tests" / "data" / "meetings"


def meetings_suite(args: argparse.Namespace) -> list[Row]:
    """`ceylon meetings solve` on every instance, end to end, scored by score.py."""
    data = meetings_dir()
    out = ROOT / "bench-results" / "meetings"
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    for path in sorted((data / "instances").glob("*_*.json")):
        name = path.stem
        print(f"  meetings: {name}", file=sys.stderr)
        started = time.monotonic()
        run = Process(python_command("-m", "ceylon", "meetings", "solve", str(path), "--out",
                                     str(out / f"{name}.json")), cwd=ROOT)  # fmt: skip
        code = run.wait(timeout=300)
        timings[name] = time.monotonic() - started
        if code != 0:
            print(run.output(), file=sys.stderr)
    score = Process(python_command(str(data / "score.py"), str(out)), cwd=ROOT)
    score.wait(timeout=120)
    report = score.output()
    print("\n" + report)
    print("\n| instance | seconds (end to end, connect included) |\n|---|---|")
    for name, seconds in timings.items():
        print(f"| {name} | {seconds:.2f} |")
    match = re.search(r"score: ([\d.]+)% of optimal weighted meetings, (\d+) invalid", report)
    pct, invalid = (float(match.group(1)), int(match.group(2))) if match else (0.0, -1)
    xl = max((t for n, t in timings.items() if n.startswith("xl")), default=float("nan"))
    others = max((t for n, t in timings.items() if not n.startswith("xl")), default=float("nan"))
    return [
        Row("score (% of optimum)", float("nan"), pct, "%", ">= 99.5, 0 invalid",
            lambda r, v=pct, bad=invalid: v >= 99.5 and bad == 0),
        Row("xl_11 end to end", float("nan"), xl, "s", "< 20 s", lambda r, v=xl: v < 20),
        Row("slowest other instance", float("nan"), others, "s", "< 5 s",
            lambda r, v=others: v < 5),
    ]  # fmt: skip


SUITES: dict[str, Callable[[argparse.Namespace], list[Row]]] = {
    "transport": transport_suite,
    "agents": agents_suite,
    "nats": nats_suite,
    "tasks": tasks_suite,
    "meetings": meetings_suite,
}
#: What a suite's columns hold, where not raw | ceylon | nats.
COLUMNS: dict[str, tuple[str, str, str]] = {
    "nats": ("nats-py", "on nats", "tcp hub"),
}


def fmt(value: float) -> str:
    if value != value:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.2f}"


def print_table(title: str, rows: list[Row]) -> None:
    raw_name, ceylon_name, third = COLUMNS.get(title, ("raw", "ceylon", "nats"))
    with_nats = any(row.nats == row.nats for row in rows)
    header = f"| {'metric':<34} | {raw_name:>12} | {ceylon_name:>12} | "
    if with_nats:
        header += f"{third:>12} | "
    header += f"{'unit':<6} | {'ratio':>6} | "
    if with_nats:
        header += f"{'vs ' + third:<13} | "
    header += f"{'target':<24} | met |"
    print(f"\n### {title}\n")
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for row in rows:
        met = "yes" if row.met else "NO"
        ratio = f"{row.ratio:>5.2f}x" if row.ratio == row.ratio else f"{'-':>6}"
        line = f"| {row.metric:<34} | {fmt(row.raw):>12} | {fmt(row.ceylon):>12} | "
        if with_nats:
            line += f"{fmt(row.nats):>12} | "
        line += f"{row.unit:<6} | {ratio} | "
        if with_nats:
            beats = row.beats_nats
            versus = "-" if beats is None else (
                f"{row.nats_ratio:.2f}x {'better' if beats else 'worse'}")  # fmt: skip
            line += f"{versus:<13} | "
        print(line + f"{row.target:<24} | {met:<3} |")


def nats_versions() -> str:
    """'nats-server vX, nats-py Y' of the installed bench extra."""
    import importlib.metadata

    server = Process([str(server_binary()), "--version"], cwd=ROOT)
    server.wait(timeout=30)
    client = importlib.metadata.version("nats-py")
    return f"{server.output().strip()}, nats-py {client}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "suites",
        nargs="*",
        metavar="SUITE",
        help=f"which suites to run: {', '.join(SUITES)} (default: all)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median kept)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of throughput runs")
    parser.add_argument("--rtt-count", type=int, default=5000, help="sequential round trips")
    parser.add_argument("--task-count", type=int, default=100_000, help="zero-duration tasks")
    args = parser.parse_args()
    unknown = set(args.suites) - set(SUITES)
    if unknown:
        parser.error(f"unknown suite(s) {', '.join(sorted(unknown))}; choose from {list(SUITES)}")
    started = time.monotonic()
    print(
        f"Ceylon benchmarks on {loop_name()}, Python {sys.version.split()[0]}, "
        f"median of {args.repeat} runs; ratio = ceylon / raw"
    )
    if {"agents", "nats"} & set(args.suites or list(SUITES)):
        print(
            f"NATS: {nats_versions()}, the server pinned to one CPU with GOMAXPROCS=1; "
            "vs nats = ceylon / nats, and which does better"
        )
    for name in args.suites or list(SUITES):
        print_table(name, SUITES[name](args))
    print(f"\n(bench took {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
