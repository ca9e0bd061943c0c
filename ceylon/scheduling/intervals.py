"""Interval arithmetic on one day's hours, shared by the planner and the participant.

An interval is ``(start, end)`` in whole hours, end exclusive; a person's windows on a
date are a list of them.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["clear_of", "inside", "subtract"]

Interval = tuple[int, int]


def subtract(windows: Iterable[Interval], start: int, end: int) -> list[Interval]:
    """`windows` with ``[start, end)`` taken out (pieces left empty are dropped)."""
    out = []
    for a, b in windows:
        for piece in ((a, min(b, start)), (max(a, end), b)):
            if piece[0] < piece[1]:
                out.append(piece)
    return out


def inside(windows: Iterable[Interval], start: int, end: int) -> bool:
    """Whether ``[start, end)`` lies within one of `windows`."""
    return any(a <= start and end <= b for a, b in windows)


def clear_of(booked: Iterable[Interval], start: int, end: int, gap: int = 0) -> bool:
    """Whether ``[start, end)`` keeps `gap` hours from every interval of `booked`."""
    return all(not (start < b + gap and a < end + gap) for a, b in booked)
