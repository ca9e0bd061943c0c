"""The meeting solver, sans-I/O: availability in, a valid schedule out.

It maximises the priority-weighted number of scheduled meetings. Dates never interact (a
person's meetings on two dates cannot clash), so each date is solved on its own:

1. *Exact* for small dates: branch and bound over meetings (highest priority first),
   their start hours and attendee choices, where people in the same situation are
   interchangeable; a node budget bounds it.
2. Otherwise a *conflict-aware greedy*: meetings in order of priority and tightness, each
   placed where the attendees it takes are least wanted by the meetings still to place;
   then *ruin and recreate*: remove a few placed meetings that stand in the way of an
   unplaced one, re-insert greedily (the unplaced one first), keep the result unless it
   is worse, until the time budget is spent or everything is placed.

People and hours are bit masks (Python ints), so the checks are a few integer operations.
Every schedule it returns passes `problem.violations` (checked before returning).
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterator

from .problem import Need, Placement, Problem, Solution, violations

__all__ = ["DEFAULT_TIME_LIMIT", "solve"]

DEFAULT_TIME_LIMIT = 3.0
EXACT_NODES = 200_000


def _bits(mask: int) -> Iterator[int]:
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low


class _Day:
    """One date's subproblem."""

    def __init__(self, problem: Problem, date: str, needs: list[Need]) -> None:
        self.date = date
        self.needs = needs
        self.lo, self.hi, self.gap = problem.earliest, problem.latest, problem.min_gap
        people = sorted(p for p, dates in problem.availability.items() if dates.get(date))
        self.people = people
        index = {p: i for i, p in enumerate(people)}
        hours = range(self.lo, self.hi)
        free_at = {h: 0 for h in hours}  # hour -> people available that hour
        self.windows: dict[int, list[tuple[int, int]]] = {}
        for p in people:
            bit = 1 << index[p]
            for a, b in problem.availability[p][date]:
                for h in range(max(a, self.lo), min(b, self.hi)):
                    free_at[h] |= bit
        # Availability for [s, s + L) needs one window containing it, not just free hours
        # that touch: windows are tested per person below when they could split.
        self.split = {index[p] for p in people if len(problem.availability[p][date]) > 1}
        self.avail: list[dict[int, int]] = []  # per meeting: start -> people available
        self.required: list[int] = []
        self.reasons: list[str] = []
        for need in needs:
            options: dict[int, int] = {}
            req = 0
            missing_required = [r for r in need.required if r not in index]
            for r in need.required:
                if r in index:
                    req |= 1 << index[r]
            self.required.append(req)
            for s in range(self.lo, self.hi - need.duration + 1):
                if problem.allow is not None and not problem.allow(need, s):
                    continue
                mask = -1
                for h in range(s, s + need.duration):
                    mask &= free_at[h]
                mask = self._whole_windows(problem, mask, s, s + need.duration)
                if mask & req == req and not missing_required and _popcount(mask) >= need.seats:
                    options[s] = mask
            self.avail.append(options)
            self.reasons.append(self._why_not(need, missing_required, bool(options)))
        self.pressure = self._pressure()

    def _whole_windows(self, problem: Problem, mask: int, start: int, end: int) -> int:
        for i in _bits(mask & self._split_mask()):
            windows = problem.availability[self.people[i]][self.date]
            if not any(a <= start and end <= b for a, b in windows):
                mask &= ~(1 << i)
        return mask

    def _split_mask(self) -> int:
        cached = getattr(self, "_split_bits", None)
        if cached is None:
            cached = 0
            for i in self.split:
                cached |= 1 << i
            self._split_bits = cached
        return cached

    def _why_not(self, need: Need, missing: list[str], has_options: bool) -> str:
        if need.duration > self.hi - self.lo:
            return f"{need.duration} h does not fit in the day ({self.lo}-{self.hi})"
        if missing:
            return f"required {', '.join(sorted(missing))} never available on {self.date}"
        if not has_options:
            return (
                f"never {need.seats} people free together for {need.duration} h "
                "(with every required person)"
            )
        return "lost to higher-priority meetings (the people it needs are booked)"

    def _pressure(self) -> list[list[float]]:
        """How much the other meetings want person i at hour h (higher: keep them free)."""
        span = self.hi - self.lo
        pressure = [[0.0] * span for _ in self.people]
        for need, options in zip(self.needs, self.avail, strict=True):
            if not options:
                continue
            weight = need.priority * need.seats / len(options)
            for s, mask in options.items():
                share = weight / max(1, _popcount(mask))
                for i in _bits(mask):
                    row = pressure[i]
                    for h in range(s - self.lo, s - self.lo + need.duration):
                        row[h] += share
        return pressure


def _popcount(mask: int) -> int:
    return mask.bit_count()


class _State:
    """Placements of one day, with per-hour masks of who is in a meeting."""

    def __init__(self, day: _Day) -> None:
        self.day = day
        self.busy = [0] * (day.hi - day.lo)
        self.placed: dict[int, tuple[int, int]] = {}  # meeting -> (start, attendee mask)

    def copy(self) -> _State:
        other = _State.__new__(_State)
        other.day = self.day
        other.busy = list(self.busy)
        other.placed = dict(self.placed)
        return other

    def weight(self) -> int:
        return sum(self.day.needs[m].priority for m in self.placed)

    def blocked(self, start: int, duration: int) -> int:
        day = self.day
        lo = max(day.lo, start - day.gap)
        hi = min(day.hi, start + duration + day.gap)
        mask = 0
        for h in range(lo - day.lo, hi - day.lo):
            mask |= self.busy[h]
        return mask

    def place(self, m: int, start: int, attendees: int) -> None:
        duration = self.day.needs[m].duration
        for h in range(start - self.day.lo, start - self.day.lo + duration):
            self.busy[h] |= attendees
        self.placed[m] = (start, attendees)

    def remove(self, m: int) -> None:
        start, attendees = self.placed.pop(m)
        duration = self.day.needs[m].duration
        for h in range(start - self.day.lo, start - self.day.lo + duration):
            self.busy[h] &= ~attendees

    def best_option(self, m: int, rng: random.Random | None = None) -> tuple[int, int] | None:
        """Where and with whom to place meeting `m` now, or None if it does not fit."""
        day = self.day
        need = day.needs[m]
        req = day.required[m]
        best: tuple[float, int, int] | None = None
        for s, available in day.avail[m].items():
            free = available & ~self.blocked(s, need.duration)
            if free & req != req or _popcount(free) < need.seats:
                continue
            attendees, cost = self._choose(m, s, free)
            if rng is not None:
                cost *= 1.0 + 0.3 * rng.random()
            if best is None or cost < best[0]:
                best = (cost, s, attendees)
        return None if best is None else (best[1], best[2])

    def _choose(self, m: int, start: int, free: int) -> tuple[int, float]:
        day = self.day
        need = day.needs[m]
        req = day.required[m]
        first = start - day.lo
        costs = []
        for i in _bits(free & ~req):
            row = day.pressure[i]
            costs.append((sum(row[first : first + need.duration]), i))
        costs.sort()
        attendees = req
        total = 0.0
        for cost, i in costs[: need.seats - _popcount(req)]:
            attendees |= 1 << i
            total += cost
        for i in _bits(req):
            total += sum(day.pressure[i][first : first + need.duration])
        return attendees, total


def _order(day: _Day) -> list[int]:
    def key(m: int) -> tuple[int, int, int]:
        need = day.needs[m]
        return (-need.priority, len(day.avail[m]), -need.seats)

    return sorted((m for m in range(len(day.needs)) if day.avail[m]), key=key)


def _greedy(
    state: _State,
    order: list[int],
    rng: random.Random | None = None,
    stop: Callable[[], bool] | None = None,
) -> None:
    for i, m in enumerate(order):
        if stop is not None and i & 15 == 0 and stop():
            return  # what is placed so far is a valid schedule already
        if m in state.placed:
            continue
        option = state.best_option(m, rng)
        if option is not None:
            state.place(m, *option)


def _never() -> bool:
    return False


def _ruin_and_recreate(
    day: _Day, state: _State, deadline: float, rng: random.Random, stop: Callable[[], bool]
) -> _State:
    order = _order(day)
    candidates = [m for m in order]
    if not candidates:
        return state
    best = state
    best_weight = state.weight()
    upper = sum(day.needs[m].priority for m in candidates)
    current = state
    current_weight = best_weight
    while best_weight < upper and time.monotonic() < deadline and not stop():
        unplaced = [m for m in candidates if m not in current.placed]
        if not unplaced:
            break
        weights = [day.needs[m].priority for m in unplaced]
        target = rng.choices(unplaced, weights)[0]
        trial = current.copy()
        start = rng.choice(list(day.avail[target]))
        need = day.needs[target]
        wanted = day.avail[target][start]
        lo, hi = start - day.gap, start + need.duration + day.gap
        in_the_way = [
            m for m, (s, who) in trial.placed.items()
            if who & wanted and s < hi and s + day.needs[m].duration > lo
        ]  # fmt: skip
        rng.shuffle(in_the_way)
        count = min(len(in_the_way), rng.randint(1, 4))
        removed = in_the_way[:count]
        if rng.random() < 0.3 and trial.placed:
            removed.append(rng.choice(list(trial.placed)))
        for m in set(removed):
            if m in trial.placed:
                trial.remove(m)
        option = trial.best_option(target, rng)
        if option is not None:
            trial.place(target, *option)
        rest = [m for m in order if m not in trial.placed]
        rng.shuffle(rest)
        rest.sort(key=lambda m: -day.needs[m].priority)
        _greedy(trial, rest, rng)
        weight = trial.weight()
        if weight > current_weight or (weight == current_weight and rng.random() < 0.5):
            current, current_weight = trial, weight
            if weight > best_weight:
                best, best_weight = trial, weight
        elif rng.random() < 0.01:
            current, current_weight = best, best_weight  # restart from the best
    return best


class _Exact:
    """Branch and bound over one day; keeps the best found (the optimum unless the node
    budget runs out)."""

    def __init__(
        self, day: _Day, incumbent: _State, node_budget: int, stop: Callable[[], bool] = _never
    ) -> None:
        self.stop = stop
        self.day = day
        self.order = _order(day)
        self.suffix = [0] * (len(self.order) + 1)
        for i in range(len(self.order) - 1, -1, -1):
            self.suffix[i] = self.suffix[i + 1] + day.needs[self.order[i]].priority
        self.best = incumbent.copy()
        self.best_weight = incumbent.weight()
        self.nodes = 0
        self.budget = node_budget

    def run(self) -> _State:
        self._search(0, _State(self.day), 0)
        return self.best

    def _classes(self, free: int, state: _State) -> list[list[int]]:
        # People alike for what is left: same availability, required by the same
        # meetings, busy at the same hours on this date.
        day = self.day
        groups: dict[tuple[object, ...], list[int]] = defaultdict(list)
        for i in _bits(free):
            sig = tuple((mask >> i) & 1 for opts in day.avail for mask in opts.values())
            needed = tuple((req >> i) & 1 for req in day.required)  # required somewhere
            busy = tuple((b >> i) & 1 for b in state.busy)
            groups[(sig, needed, busy)].append(i)
        return list(groups.values())

    def _choices(self, m: int, free: int, state: _State) -> Iterator[int]:
        need = self.day.needs[m]
        req = self.day.required[m]
        groups = self._classes(free & ~req, state)

        def spread(i: int, left: int) -> Iterator[list[int]]:
            if i == len(groups):
                if left == 0:
                    yield []
                return
            for n in range(min(left, len(groups[i])), -1, -1):
                for rest in spread(i + 1, left - n):
                    yield [n, *rest]

        for counts in spread(0, need.seats - _popcount(req)):
            mask = req
            for group, n in zip(groups, counts, strict=True):
                for i in group[:n]:
                    mask |= 1 << i
            yield mask

    def _search(self, i: int, state: _State, weight: int) -> None:
        self.nodes += 1
        if self.nodes & 1023 == 0 and self.stop():
            self.budget = 0  # asked to stop: keep the best found so far
        if weight > self.best_weight:
            self.best, self.best_weight = state.copy(), weight
        if (
            i == len(self.order)
            or weight + self.suffix[i] <= self.best_weight
            or self.nodes > self.budget
        ):
            return
        day = self.day
        m = self.order[i]
        need = day.needs[m]
        for s, available in day.avail[m].items():
            free = available & ~state.blocked(s, need.duration)
            if free & day.required[m] != day.required[m] or _popcount(free) < need.seats:
                continue
            for attendees in self._choices(m, free, state):
                state.place(m, s, attendees)
                self._search(i + 1, state, weight + need.priority)
                state.remove(m)
                if self.nodes > self.budget or self.best_weight == weight + self.suffix[i]:
                    return
        self._search(i + 1, state, weight)


def _small(day: _Day) -> bool:
    return len(day.needs) <= 8 and len(day.people) <= 16


def solve(
    problem: Problem,
    time_limit: float = DEFAULT_TIME_LIMIT,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    stop: Callable[[], bool] = _never,
) -> Solution:
    """A valid schedule maximising the priority-weighted count of scheduled meetings.

    Args:
        time_limit: seconds of local improvement, shared by the dates that need it.
        seed: the search is random but reproducible for a given seed.
        progress: called with a line of news now and then.
        stop: polled often (many times a second): when it returns True the search ends
            with the best valid schedule found so far.
    """
    started = time.monotonic()
    by_date: dict[str, list[Need]] = defaultdict(list)
    for need in problem.meetings:
        by_date[need.date].append(need)
    days = [_Day(problem, date, needs) for date, needs in sorted(by_date.items())]
    rng = random.Random(seed)
    states = []
    for day in days:
        state = _State(day)
        _greedy(state, _order(day), stop=stop)
        states.append(state)
    total = problem.total_weight
    if progress:
        weight = sum(s.weight() for s in states)
        progress(f"greedy: {weight}/{total} weighted in {time.monotonic() - started:.2f} s")
    # Share the budget by how much each date has left to gain.
    for index, day in enumerate(days):
        if _small(day):
            states[index] = _Exact(day, states[index], EXACT_NODES, stop).run()
    gaps = [
        sum(day.needs[m].priority for m in _order(day)) - states[i].weight()
        for i, day in enumerate(days)
    ]
    remaining = max(0.0, time_limit - (time.monotonic() - started))
    open_gap = sum(g for g, day in zip(gaps, days, strict=True) if not _small(day))
    for index, day in enumerate(days):
        if _small(day) or gaps[index] == 0 or open_gap == 0:
            continue
        share = remaining * gaps[index] / open_gap
        states[index] = _ruin_and_recreate(
            day, states[index], time.monotonic() + share, random.Random(rng.random()), stop
        )
    solution = _assemble(problem, days, states)
    if progress:
        progress(
            f"solved: {solution.weighted(problem)}/{total} weighted in "
            f"{time.monotonic() - started:.2f} s"
        )
    broken = violations(problem, solution.placements.values())
    if broken:  # a bug: never hand out an invalid schedule
        raise AssertionError("solver produced an invalid schedule: " + "; ".join(broken[:5]))
    return solution


def _assemble(problem: Problem, days: list[_Day], states: list[_State]) -> Solution:
    placements: dict[str, Placement] = {}
    reasons: dict[str, str] = {}
    for day, state in zip(days, states, strict=True):
        for m, need in enumerate(day.needs):
            if m in state.placed:
                start, attendees = state.placed[m]
                people = tuple(sorted(day.people[i] for i in _bits(attendees)))
                placements[need.id] = Placement(
                    need.id, day.date, start, start + need.duration, people
                )
            else:
                reasons[need.id] = day.reasons[m]
    return Solution(placements, reasons)
