"""Child processes with their output read line by line (tests, demos, ``tasks run``).

`Process` starts a child, collects its output lines on a thread, lets the caller wait for
a line matching a pattern under a deadline, and stops the child by its PID: terminate,
wait, kill. Nothing here sleeps to synchronise: waits block on the line queue.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["Process", "python_command"]


def python_command(*args: str) -> list[str]:
    """``[sys.executable, *args]``: run Python the way the current process runs."""
    return [sys.executable, *args]


class Process:
    """A child process with its output (stdout and stderr merged) read line by line.

    Args:
        command: the program and its arguments.
        cwd: working directory.
        env: extra environment variables, added to the current environment.
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        cwd: str | Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.command = list(command)
        environment = os.environ.copy()
        environment["PYTHONUNBUFFERED"] = "1"
        environment.update(env or {})
        self.popen = subprocess.Popen(
            self.command,
            cwd=cwd,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        self.lines: list[str] = []
        self._cursor = 0  # lines before it were looked at by a wait that matched
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def _next_line(self, deadline: float, wanted: str, timeout: float) -> str:
        """The next line printed, kept in `lines`; raises when time or output runs out."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"no {wanted} from {self.command!r} in {timeout} s; "
                    f"output so far:\n{self.output()}"
                )
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self._queue.put(None)  # keep the end marker for later waits
                self.popen.wait(timeout=5)
                raise RuntimeError(
                    f"{self.command!r} exited with {self.popen.returncode} before printing "
                    f"{wanted}; output:\n{self.output()}"
                )
            self.lines.append(line)
            return line

    def wait_for_line(self, pattern: str, timeout: float = 15.0) -> re.Match[str]:
        """Wait until the child prints a line matching the regex `pattern`, or return at
        once if it has already printed one since the last line a wait matched.

        Lines printed are kept in `lines` (and in `output()`), whether or not they match.

        Raises:
            TimeoutError: no such line within `timeout` seconds; the message shows
                what the child printed.
            RuntimeError: the child exited first.
        """
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        self.drain()
        start = self._cursor
        while True:
            for index in range(start, len(self.lines)):
                match = regex.search(self.lines[index])
                if match:
                    self._cursor = index + 1
                    return match
            start = len(self.lines)
            self._next_line(deadline, f"a line matching {pattern!r}", timeout)

    def wait_for_lines(self, patterns: list[str], timeout: float = 15.0) -> None:
        """Wait until every regex in `patterns` matched its own line, in any order, among
        the lines printed since the last line a wait matched (as `wait_for_line`).

        Raises:
            TimeoutError, RuntimeError: as `wait_for_line`.
        """
        deadline = time.monotonic() + timeout
        pending = [re.compile(p) for p in patterns]
        self.drain()
        start, last = self._cursor, self._cursor
        while True:
            for index in range(start, len(self.lines)):
                for regex in pending:
                    if regex.search(self.lines[index]):
                        pending.remove(regex)
                        last = index + 1
                        break
            if not pending:
                self._cursor = max(self._cursor, last)
                return
            start = len(self.lines)
            wanted = f"lines matching {[r.pattern for r in pending]}"
            self._next_line(deadline, wanted, timeout)

    def drain(self) -> list[str]:
        """Collect every line already printed, without waiting."""
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                return self.lines
            if line is None:
                self._queue.put(None)
                return self.lines
            self.lines.append(line)

    def output(self) -> str:
        """Everything printed so far."""
        return "\n".join(self.drain())

    def signal(self, signum: int) -> None:
        """Send `signum` to the child (only if it is still running)."""
        if self.popen.poll() is None:
            os.kill(self.popen.pid, signum)

    def kill(self) -> None:
        """SIGKILL the child and reap it."""
        self.signal(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def wait(self, timeout: float = 15.0) -> int:
        """Wait for the child to exit; return its exit code.

        Raises:
            subprocess.TimeoutExpired: it is still running after `timeout`.
        """
        code = self.popen.wait(timeout=timeout)
        self._close_pipe(timeout)
        return code

    def _close_pipe(self, timeout: float) -> None:
        self._reader.join(timeout=timeout)
        if self.popen.stdout is not None and not self._reader.is_alive():
            self.popen.stdout.close()

    def stop(self, timeout: float = 10.0) -> int:
        """Terminate, wait up to `timeout`, then kill; return the exit code."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=timeout)
        self._close_pipe(timeout)
        return self.popen.returncode

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
