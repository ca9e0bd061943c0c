"""Two processes talking over the transport: an echo server and a client that measures it.

    python examples/transport_echo.py serve --port 0
    python examples/transport_echo.py client --connect 127.0.0.1:PORT --count 2000

The server prints ``listening on HOST:PORT`` once it is listening, echoes every message
back to its sender, and exits 0 on SIGINT/SIGTERM after saying goodbye to its clients.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
import ssl
import statistics
import sys
import time

from loguru import logger

import transport


@dataclasses.dataclass
class Probe:
    seq: int
    sent_at: float
    text: str
    tags: tuple[str, ...] = ()


def _tls_server(args: argparse.Namespace) -> ssl.SSLContext | None:
    if args.tls_cert:
        return transport.server_context(args.tls_cert, args.tls_key, args.tls_ca)
    return None


async def serve(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async def echo(conn: transport.Connection) -> None:
        async for envelope in conn:
            await conn.send_envelope(envelope._replace(sender="echo", target=envelope.sender))

    options = transport.ConnectionOptions(
        heartbeat_interval=args.heartbeat_interval, heartbeat_timeout=args.heartbeat_timeout
    )
    server = await transport.serve(
        echo,
        args.host,
        args.port,
        identity=transport.make_identity("echo-server", "server"),
        token=args.token,
        ssl=_tls_server(args),
        options=options,
    )
    print(f"listening on {server.host}:{server.port}", flush=True)
    await stop.wait()
    await server.aclose()
    print("server stopped", flush=True)
    return 0


async def client(args: argparse.Namespace) -> int:
    host, _, port = args.connect.rpartition(":")
    context = transport.client_context(args.tls_ca) if args.tls_ca else None
    conn = await transport.connect(
        host,
        int(port),
        identity=transport.make_identity("echo-client", "client"),
        token=args.token,
        ssl=context,
    )
    print(f"connected to {conn.peer.name} at {args.connect}", flush=True)
    # Sequential round trips first, then a pipelined burst.
    latencies = []
    for seq in range(args.count):
        started = time.perf_counter()
        await conn.send(Probe(seq, started, "ping"))
        reply = conn.decode(await conn.recv())
        latencies.append(time.perf_counter() - started)
        assert reply.seq == seq, f"reply {reply.seq} to request {seq}"
    started = time.perf_counter()
    for seq in range(args.count):
        conn.send_nowait(Probe(seq, started, "burst", ("a", "b")))
    for seq in range(args.count):
        reply = conn.decode(await conn.recv())
        if reply.seq != seq or reply.tags != ("a", "b"):
            print(f"out of order or corrupted: {reply!r} at {seq}", file=sys.stderr)
            return 1
    burst = time.perf_counter() - started
    await conn.close("done")
    latencies.sort()
    print(
        f"round trips: {args.count}, p50 {statistics.median(latencies) * 1e6:.0f} us, "
        f"p99 {latencies[int(len(latencies) * 0.99) - 1] * 1e6:.0f} us",
        flush=True,
    )
    print(
        f"pipelined: {args.count} messages echoed in order in {burst * 1e3:.1f} ms "
        f"({2 * args.count / burst:,.0f} msgs/s both ways)",
        flush=True,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the echo server")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    s.add_argument("--heartbeat-interval", type=float, default=1.0)
    s.add_argument("--heartbeat-timeout", type=float, default=5.0)
    s.add_argument("--tls-cert")
    s.add_argument("--tls-key")
    s.add_argument("--tls-ca")
    c = sub.add_parser("client", help="measure the echo server")
    c.add_argument("--connect", required=True, metavar="HOST:PORT")
    c.add_argument("--count", type=int, default=2000)
    c.add_argument("--tls-ca")
    for p in (s, c):
        p.add_argument("--token", default=None, help="shared secret (default: none)")
        p.add_argument("-v", "--verbose", action="store_true", help="log the transport")
    args = parser.parse_args(argv)
    if args.verbose:
        logger.enable("transport")
    else:
        logger.remove()
        logger.add(sys.stderr, level="WARNING")
        logger.enable("transport")
    return transport.run(serve(args) if args.command == "serve" else client(args))


if __name__ == "__main__":
    sys.exit(main())
