"""Ceylon's benchmarks, each beside a raw asyncio + msgpack baseline measured in the same run.

    scripts/bench [SUITE ...] [--repeat N] [--seconds S]

Every figure comes from separate processes talking over 127.0.0.1, the listening one
pinned to the first CPU and the connecting one to the second (where there are two).
Each measurement is repeated (raw and Ceylon alternating, to share the machine's noise)
and the median is reported; the table gives both rows and the ratio, and whether each
target is met.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ceylon.testing import Process, python_command  # noqa: E402
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


@dataclass
class Row:
    metric: str
    raw: float
    ceylon: float
    unit: str
    target: str
    ok: Callable[[float], bool]  # takes the ratio ceylon/raw

    @property
    def ratio(self) -> float:
        return self.ceylon / self.raw if self.raw else float("nan")


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


SUITES: dict[str, Callable[[argparse.Namespace], list[Row]]] = {"transport": transport_suite}


def fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def print_table(title: str, rows: list[Row]) -> None:
    header = f"| {'metric':<26} | {'raw':>12} | {'ceylon':>12} | {'unit':<6} | {'ratio':>6} | "
    header += f"{'target':<12} | met |"
    print(f"\n### {title}\n")
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for row in rows:
        met = "yes" if row.ok(row.ratio) else "NO"
        print(
            f"| {row.metric:<26} | {fmt(row.raw):>12} | {fmt(row.ceylon):>12} | "
            f"{row.unit:<6} | {row.ratio:>5.2f}x | {row.target:<12} | {met:<3} |"
        )


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
    args = parser.parse_args()
    unknown = set(args.suites) - set(SUITES)
    if unknown:
        parser.error(f"unknown suite(s) {', '.join(sorted(unknown))}; choose from {list(SUITES)}")
    started = time.monotonic()
    print(
        f"Ceylon benchmarks on {loop_name()}, Python {sys.version.split()[0]}, "
        f"median of {args.repeat} runs; ratio = ceylon / raw"
    )
    for name in args.suites or list(SUITES):
        print_table(name, SUITES[name](args))
    print(f"\n(bench took {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
