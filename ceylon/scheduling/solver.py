"""The meeting solver, sans-I/O: availability in, a valid schedule out.

It maximises the priority-weighted number of scheduled meetings. Dates never interact (a
person's meetings on two dates cannot clash), so each date is solved on its own:

1. A *conflict-aware greedy*: meetings in order of priority and tightness, each placed
   where the attendees it takes are least wanted by the meetings still to place.
2. *Exact* for dates of at most `EXACT_MEETINGS` meetings: branch and bound over which
   meetings take place and when (`_Exact`), with the greedy schedule as the incumbent,
   a bound from each hour's seating capacity, and an exact seating search (`_Assign`)
   for each schedule that would beat the best. It usually proves the optimum in
   milliseconds; if its part of the time share runs out first, local search goes on
   from the best it found.
3. Otherwise *ruin and recreate*: remove a few placed meetings that stand in the way of
   an unplaced one, re-insert greedily (the unplaced one first), keep the result unless
   it is worse, until the time budget is spent or everything is placed.

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
#: dates with at most this many meetings are searched exactly (`_Exact`)
EXACT_MEETINGS = 20
#: the part of a date's time share exact search may use before local search takes over
EXACT_SHARE = 0.7
#: node budget of one exact search (the time share ends it well before, as a rule)
EXACT_NODES = 1_000_000
#: calls one seating search (`_Assign`) may make before it gives up
ASSIGN_CALLS = 20_000


def _bits(mask: int) -> Iterator[int]:
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low


def _never() -> bool:
    return False


class _Day:
    """One date's subproblem."""

    def __init__(
        self, problem: Problem, date: str, needs: list[Need], stop: Callable[[], bool] = _never
    ) -> None:
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
        stopped = False
        for number, need in enumerate(needs):
            options: dict[int, int] = {}
            stopped = stopped or (number & 15 == 0 and stop())
            if stopped:  # left without options: nothing is placed for it
                self.required.append(0)
                self.avail.append(options)
                self.reasons.append("not considered: the search was stopped")
                continue
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


class _Assign:
    """Who attends, for meetings whose start hours are fixed: an exact search over people.

    Required people are seated first; then each other person in turn takes one of the
    largest sets of still-short meetings they can all attend, depth first, remembering
    the (person, shortfalls) pairs that failed, and giving up on a branch as soon as the
    people left cannot cover what is short (per meeting, and per set of meetings at one
    hour, where each person counts once). `run` returns meeting -> attendee mask, or None
    when no seating exists; `settled` is False when it gave up (stop, or `budget` calls)
    without knowing.
    """

    def __init__(
        self,
        day: _Day,
        placed: dict[int, int],
        points: dict[int, int],
        stop: Callable[[], bool],
        budget: int = 1 << 62,
    ) -> None:
        self.day = day
        self.stop = stop
        self.budget = budget
        self.meetings = sorted(placed, key=lambda m: placed[m])
        self.placed = placed
        self.points = points  # meeting -> bit mask of the (gap-widened) hours it holds
        self.calls = 0
        self.settled = True

    def run(self) -> dict[int, int] | None:
        day = self.day
        ms = self.meetings
        n = len(ms)
        conflict = [0] * n  # j -> mask of meetings (by position) clashing with it
        for a in range(n):
            for b in range(n):
                if a != b and self.points[ms[a]] & self.points[ms[b]]:
                    conflict[a] |= 1 << b
        seats = [day.needs[m].seats - _popcount(day.required[m]) for m in ms]
        held: dict[int, int] = defaultdict(int)  # person -> meetings they are required in
        for j, m in enumerate(ms):
            for i in _bits(day.required[m]):
                if held[i] & conflict[j]:
                    return None  # required in two meetings that clash
                held[i] |= 1 << j
        eligible: dict[int, int] = defaultdict(int)  # person -> meetings they may fill
        for j, m in enumerate(ms):
            for i in _bits(day.avail[m][self.placed[m]] & ~day.required[m]):
                if not held[i] & conflict[j]:
                    eligible[i] |= 1 << j
        people = [i for i in eligible if eligible[i]]
        # Scarce people first: those who can fill the fewest meetings.
        people.sort(key=lambda i: (_popcount(eligible[i]), i))
        self.options = [_independent_sets(eligible[i], conflict) for i in people]
        self.people = people
        # count[k][j]: people from position k on who may fill meeting j
        self.count = [[0] * n for _ in range(len(people) + 1)]
        for k in range(len(people) - 1, -1, -1):
            row = list(self.count[k + 1])
            for j in _bits(eligible[people[k]]):
                row[j] += 1
            self.count[k] = row
        # The meetings sharing an hour: each person fills at most one of them.
        cliques: set[int] = set()
        span = 0
        for m in ms:
            span |= self.points[m]
        for t in _bits(span):
            clique = 0
            for j, m in enumerate(ms):
                if self.points[m] >> t & 1:
                    clique |= 1 << j
            if clique & (clique - 1):
                cliques.add(clique)
        self.cliques = [c for c in cliques if not any(c != d and c & d == c for d in cliques)]
        self.reach = [[0] * len(self.cliques) for _ in range(len(people) + 1)]
        for k in range(len(people) - 1, -1, -1):
            row = list(self.reach[k + 1])
            for c, clique in enumerate(self.cliques):
                if eligible[people[k]] & clique:
                    row[c] += 1
            self.reach[k] = row
        self.failed: set[tuple[int, tuple[int, ...]]] = set()
        self.chosen: list[int] = [0] * len(people)
        if not self._fill(0, tuple(seats)):
            return None
        out = {m: day.required[m] for m in ms}
        for k, i in enumerate(people):
            for j in _bits(self.chosen[k]):
                out[ms[j]] |= 1 << i
        return out

    def _fill(self, k: int, short: tuple[int, ...]) -> bool:
        if not any(short):
            for rest in range(k, len(self.chosen)):
                self.chosen[rest] = 0
            return True
        if not self.settled or k == len(self.people):
            return False
        self.calls += 1
        if self.calls > self.budget or (self.calls & 255 == 0 and self.stop()):
            self.settled = False
            return False
        count = self.count[k]
        if any(s > c for s, c in zip(short, count, strict=True)):
            return False
        for clique, reach in zip(self.cliques, self.reach[k], strict=True):
            need = 0
            for j in _bits(clique):
                need += short[j]
            if need > reach:
                return False
        key = (k, short)
        if key in self.failed:
            return False
        open_mask = 0
        for j, s in enumerate(short):
            if s:
                open_mask |= 1 << j
        useful: list[int] = []
        for option in self.options[k]:
            effect = option & open_mask
            if effect and not any(effect & u == effect for u in useful):
                useful = [u for u in useful if u & effect != u]
                useful.append(effect)
        useful.sort(key=_popcount, reverse=True)
        for effect in useful:
            self.chosen[k] = effect
            after = tuple(s - ((effect >> j) & 1) for j, s in enumerate(short))
            if self._fill(k + 1, after):
                return True
        if not useful:  # nothing left for this person to fill
            self.chosen[k] = 0
            if self._fill(k + 1, short):
                return True
        self.failed.add(key)
        return False


def _independent_sets(mask: int, conflict: list[int]) -> list[int]:
    """The maximal sets of meetings in `mask` that pairwise do not clash."""
    out: list[int] = []

    def grow(chosen: int, left: int) -> None:
        if not left:
            out.append(chosen)
            return
        low = left & -left
        j = low.bit_length() - 1
        grow(chosen | low, left & ~low & ~conflict[j])
        if left & conflict[j] & ~low:  # without j, only if something clashing could fit
            grow(chosen, left & ~low)

    grow(0, mask)
    return [s for s in out if not any(s != t and s & t == s for t in out)]


class _Exact:
    """Branch and bound over one date: which meetings take place, and when.

    Who attends is left open while branching: a placement is kept only if, at every
    (gap-widened) hour, the meetings holding it can still be seated side by side (Hall's
    condition over each set of them, required people counted where they must be). That
    is a relaxation, so nothing feasible is cut; a schedule that would beat the best is
    then seated exactly by `_Assign` (or dropped). The bound is the weight placed plus
    every undecided meeting that still has a start it could take; meetings are branched
    on fewest starts first, starts that keep most of the rest open first; identical
    meetings take their starts in order. Ends early (not proven) on `stop`, the deadline
    or the node budget; `proven` says whether the search ran to the end.
    """

    def __init__(
        self,
        day: _Day,
        incumbent: _State,
        deadline: float,
        stop: Callable[[], bool] = _never,
        node_budget: int = EXACT_NODES,
    ) -> None:
        self.day = day
        self.stop = stop
        self.deadline = deadline
        self.budget = node_budget
        self.best = incumbent.copy()
        self.best_weight = incumbent.weight()
        self.nodes = 0
        self.seatings = 0
        self.aborted = False  # stopped, out of time or out of nodes
        self.unsure = False  # a seating search gave up
        self.proven = False
        self.meetings = _order(day)
        widen = (1 << day.gap) - 1 if day.gap else 0
        self.points: dict[tuple[int, int], int] = {}
        self.free: dict[tuple[int, int], int] = {}
        for m in self.meetings:
            need = day.needs[m]
            for s, mask in day.avail[m].items():
                span = ((1 << need.duration) - 1) | (widen << need.duration)
                self.points[(m, s)] = span << (s - day.lo)
                self.free[(m, s)] = mask & ~day.required[m]
        self.short = {m: day.needs[m].seats - _popcount(day.required[m]) for m in self.meetings}
        self.priority = {m: day.needs[m].priority for m in self.meetings}
        self.at: list[list[int]] = [[] for _ in range(day.hi - day.lo + day.gap)]
        self.placed: dict[int, int] = {}
        # Identical meetings (same length, seats, weight, required people and options):
        # any schedule can be relabelled so their starts rise, the skipped ones last.
        self.twin_after: dict[int, int] = {}
        self.twin_before: dict[int, int] = {}
        last: dict[tuple[object, ...], int] = {}
        for m in sorted(self.meetings):
            need = day.needs[m]
            key = (need.duration, need.seats, need.priority, day.required[m],
                   tuple(sorted(day.avail[m].items())))  # fmt: skip
            if key in last:
                self.twin_after[last[key]] = m
                self.twin_before[m] = last[key]
            last[key] = m

    def run(self) -> _State:
        domains = {m: sorted(self.day.avail[m]) for m in self.meetings}
        self._search(0, domains)
        self.proven = not self.aborted and not self.unsure
        return self.best

    def _halt(self) -> bool:
        if self.stop() or time.monotonic() > self.deadline:
            self.aborted = True
        return self.aborted

    # -- the relaxation -----------------------------------------------------------------

    def _fits(self, m: int, s: int) -> bool:
        """Whether (m, s) can join the placed meetings as far as each hour can tell."""
        points = self.points[(m, s)]
        seen: set[tuple[int, ...]] = set()
        t = 0
        while points:
            if points & 1 and self.at[t]:
                others = tuple(self.at[t])
                if others not in seen:
                    seen.add(others)
                    if not self._hall(m, s, others):
                        return False
            points >>= 1
            t += 1
        return True

    def _hall(self, m: int, s: int, others: tuple[int, ...]) -> bool:
        day = self.day
        required = day.required[m]
        held = required
        frees = []
        shorts = []
        for j in others:
            r = day.required[j]
            if r & held:
                return False  # someone required in two meetings at once
            held |= r
            frees.append(self.free[(j, self.placed[j])])
            shorts.append(self.short[j])
        mine = self.free[(m, s)] & ~held
        frees = [f & ~held for f in frees]
        short = self.short[m]
        count = len(others)
        check_all = required and any(f & required for f in frees)  # were counted free
        for subset in range(1 << count):
            rest = 0  # the others in `subset`, without (m, s)
            rest_need = 0
            for j in range(count):
                if subset >> j & 1:
                    rest |= frees[j]
                    rest_need += shorts[j]
            if _popcount(mine | rest) < short + rest_need:
                return False
            if check_all and subset and _popcount(rest) < rest_need:
                return False
        return True

    # -- the search ---------------------------------------------------------------------

    def _place(self, m: int, s: int) -> None:
        self.placed[m] = s
        for t in _bits(self.points[(m, s)]):
            self.at[t].append(m)

    def _unplace(self, m: int) -> None:
        s = self.placed.pop(m)
        for t in _bits(self.points[(m, s)]):
            self.at[t].remove(m)

    def _bound(self, weight: int, domains: dict[int, list[int]]) -> int:
        return weight + sum(self.priority[m] for m, d in domains.items() if d)

    def _search(self, weight: int, domains: dict[int, list[int]]) -> None:
        self.nodes += 1
        if self.nodes > self.budget or (self.nodes & 7 == 0 and self._halt()):
            self.aborted = True
        if self.aborted:
            return
        bound = self._bound(weight, domains)
        if bound <= self.best_weight:
            return
        live = [
            m for m, d in domains.items()
            if d and not domains.get(self.twin_before.get(m, -1))
        ]  # fmt: skip
        if not live:
            self._seat(weight)
            return
        m = min(live, key=lambda q: (len(domains[q]), -self.priority[q], q))
        priority = self.priority[m]
        rest = {q: d for q, d in domains.items() if q != m}
        children = []
        for s in domains[m]:
            self._place(m, s)
            points = self.points[(m, s)]
            child = {}
            for q, d in rest.items():
                child[q] = [x for x in d if not self.points[(q, x)] & points or self._fits(q, x)]
            twin = self.twin_after.get(m)
            if twin is not None and twin in child:
                child[twin] = [x for x in child[twin] if x >= s]
            self._twins_follow(child)
            self._unplace(m)
            children.append((self._bound(weight + priority, child), s, child))
        children.sort(key=lambda c: -c[0])
        for child_bound, s, child in children:
            if child_bound <= self.best_weight or self.aborted:
                break
            self._place(m, s)
            self._search(weight + priority, child)
            self._unplace(m)
            if self.best_weight >= bound:
                return
        if self.aborted:
            return
        twin = self.twin_after.get(m)
        if twin is not None and twin in rest:
            rest[twin] = []  # the identical ones after it are skipped too
            self._twins_follow(rest)
        if bound - priority > self.best_weight:
            self._search(weight, rest)

    def _twins_follow(self, domains: dict[int, list[int]]) -> None:
        """A meeting whose identical predecessor cannot take place cannot either."""
        for m in sorted(domains):
            before = self.twin_before.get(m)
            if before is not None and before in domains and not domains[before]:
                domains[m] = []

    def _seat(self, weight: int) -> None:
        """Seat the placed meetings; a seating is the new best."""
        self.seatings += 1
        assign = _Assign(self.day, dict(self.placed),
                         {m: self.points[(m, s)] for m, s in self.placed.items()},
                         self._halt, ASSIGN_CALLS)  # fmt: skip
        seating = assign.run()
        if not assign.settled:
            self.unsure = True  # it may have been feasible: no proof of optimality
        if seating is None:
            return
        state = _State(self.day)
        for m, s in self.placed.items():
            state.place(m, s, seating[m])
        self.best, self.best_weight = state, weight


def _exact_sized(day: _Day) -> bool:
    return len(day.needs) <= EXACT_MEETINGS


def _upper(day: _Day) -> int:
    """The weight of every meeting of the date that could take place on its own."""
    return sum(day.needs[m].priority for m in _order(day))


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
    days = [_Day(problem, date, needs, stop) for date, needs in sorted(by_date.items())]
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
    # Share the budget by how much each date has left to gain; dates exact search may
    # take go first (they are usually proven optimal at once, and what they leave of
    # their share goes to the others).
    gaps = [_upper(day) - state.weight() for day, state in zip(days, states, strict=True)]
    open_gap = sum(gaps)
    for index in sorted(range(len(days)), key=lambda i: not _exact_sized(days[i])):
        day, gap = days[index], gaps[index]
        if gap == 0 or stop():
            continue
        now = time.monotonic()
        share = max(0.0, time_limit - (now - started)) * gap / open_gap
        open_gap -= gap
        day_rng = random.Random(rng.random())
        if _exact_sized(day):
            exact = _Exact(day, states[index], now + EXACT_SHARE * share, stop)
            states[index] = exact.run()
            if progress:
                verdict = "proven optimal" if exact.proven else "not proven optimal"
                progress(f"exact {day.date}: {states[index].weight()}/{_upper(day)} weighted, "
                         f"{verdict}, {exact.nodes} nodes in "
                         f"{time.monotonic() - now:.2f} s")  # fmt: skip
            if exact.proven:
                continue
        states[index] = _ruin_and_recreate(day, states[index], now + share, day_rng, stop)
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
