"""The demo: real processes on a free port on 127.0.0.1, with a short report.

Run through ``scripts/demo``. Every child is started here, waited on with a deadline,
and stopped (terminate, wait, kill) by its PID.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ceylon.testing import Process, python_command

ROOT = Path(__file__).resolve().parent.parent


def transport_demo() -> None:
    print("== transport: an echo server and a client as two processes", flush=True)
    with Process(
        python_command("examples/transport_echo.py", "serve", "--port", "0"), cwd=ROOT
    ) as server:
        address = server.wait_for_line(r"listening on (\S+:\d+)").group(1)
        print(f"  server pid {server.pid} listening on {address}")
        client = Process(
            python_command(
                "examples/transport_echo.py", "client", "--connect", address, "--count", "2000"
            ),
            cwd=ROOT,
        )
        code = client.wait(timeout=60)
        for line in client.output().splitlines():
            print(f"  client: {line}")
        if code != 0:
            raise SystemExit(f"client failed with exit code {code}")
        server.signal(15)
        server.wait_for_line("server stopped")
        code = server.wait()
    if code != 0:
        raise SystemExit(f"server exited with {code}")
    print("  server said goodbye and exited 0 on SIGTERM")


def main() -> int:
    started = time.monotonic()
    transport_demo()
    print(f"demo finished in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
