"""`Process`: waits for lines see what was printed since the last match, both alike."""

from __future__ import annotations

import sys

import pytest

from ceylon.process import Process

from ...conftest import seconds


def test_waits_see_lines_printed_since_the_last_match() -> None:
    with Process([sys.executable, "-c", "print('a'); print('b'); print('c')"]) as child:
        assert child.wait(seconds(20)) == 0
        child.output()  # everything drained before any wait
        assert child.wait_for_line(r"^b$", seconds(5)).group(0) == "b"
        child.wait_for_lines([r"^c$"], seconds(5))  # after b: still there
        assert child.lines == ["a", "b", "c"]


def test_a_line_matched_once_is_not_matched_again() -> None:
    with Process([sys.executable, "-c", "print('x 1'); print('x 2')"]) as child:
        assert child.wait_for_line(r"^x (\d)$", seconds(20)).group(1) == "1"
        assert child.wait_for_line(r"^x (\d)$", seconds(20)).group(1) == "2"


def test_a_wait_that_times_out_hides_no_line_from_the_next() -> None:
    with Process([sys.executable, "-c", "print('b')"]) as child:
        assert child.wait(seconds(20)) == 0
        with pytest.raises(RuntimeError):  # it exited without printing one
            child.wait_for_line(r"^z$", seconds(5))
        assert child.wait_for_line(r"^b$", seconds(1)).group(0) == "b"
