"""The README's first command does its job (the set-up part is what scripts/test did)."""

from __future__ import annotations

import sys

from ceylon.testing import Process

from ..conftest import ROOT, seconds


def test_the_demo_runs_and_exits_zero() -> None:
    demo = Process([sys.executable, "scripts/demo.py"], cwd=ROOT)
    code = demo.wait(timeout=seconds(120))
    output = demo.output()
    assert code == 0, output
    assert "3 workers said goodbye; every process exited 0" in output
    assert "demo finished" in output
