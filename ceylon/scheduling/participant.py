"""`ParticipantAgent`: a person's agent; it owns the calendar.

It answers availability questions (the tutorial's per-slot `AvailabilityRequest`, and the
whole-calendar `CalendarRequest`), and accepts a booking only if the slot lies inside one
of its windows and keeps `min_gap` hours from the bookings it already holds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from ..base.agent import BaseAgent
from ..handlers import on
from ..peer import AgentDetail, PeerMode
from .data import (
    AvailabilityRequest,
    AvailabilityResponse,
    BookingProposal,
    BookingReply,
    CalendarReply,
    CalendarRequest,
    MeetingCancelled,
    MeetingScheduled,
    TimeSlot,
)
from .intervals import clear_of, inside, subtract

__all__ = ["ParticipantAgent", "as_slots"]


def as_slots(slots: Iterable[Any]) -> list[TimeSlot]:
    """Availability given as `TimeSlot`s, ``{"date","start","end"}`` maps or triples."""
    out = []
    for slot in slots:
        if isinstance(slot, TimeSlot):
            out.append(slot)
        elif isinstance(slot, dict):
            start = slot["start"] if "start" in slot else slot["start_time"]
            end = slot["end"] if "end" in slot else slot["end_time"]
            out.append(TimeSlot(str(slot["date"]), int(start), int(end)))
        else:
            date, start, end = slot
            out.append(TimeSlot(str(date), int(start), int(end)))
    return out


class ParticipantAgent(BaseAgent):
    """A participant: its availability, its bookings, its answers.

    Args:
        name: the person's name (unique in the workspace).
        available_slots: when the person is free (see `as_slots` for the accepted forms).
    """

    def __init__(
        self,
        name: str,
        available_slots: Iterable[Any] = (),
        role: str = "participant",
        **kwargs: Any,
    ) -> None:
        kwargs.pop("mode", None)
        super().__init__(name=name, mode=PeerMode.CLIENT, role=role, **kwargs)
        self.available_slots = as_slots(available_slots)
        self.bookings: dict[str, TimeSlot] = {}
        self.scheduled_meetings: dict[str, TimeSlot] = {}

    # -- calendar ---------------------------------------------------------------------

    def is_free(self, slot: TimeSlot, min_gap: int = 0, ignore: str | None = None) -> bool:
        """Inside one window, and `min_gap` hours clear of every other booking."""
        windows = [(w.start_time, w.end_time) for w in self.available_slots if w.date == slot.date]
        booked = [
            (b.start_time, b.end_time)
            for meeting_id, b in self.bookings.items()
            if meeting_id != ignore and b.date == slot.date
        ]
        return inside(windows, slot.start_time, slot.end_time) and clear_of(
            booked, slot.start_time, slot.end_time, min_gap
        )

    def free_windows(self, dates: Iterable[str], earliest: int, latest: int) -> list[TimeSlot]:
        """Availability on `dates` within [earliest, latest], minus what is booked."""
        wanted = set(dates)
        out: list[TimeSlot] = []
        for window in self.available_slots:
            if wanted and window.date not in wanted:
                continue
            pieces = [(max(window.start_time, earliest), min(window.end_time, latest))]
            for booked in self.bookings.values():
                if booked.date == window.date:
                    pieces = subtract(pieces, booked.start_time, booked.end_time)
            out += [TimeSlot(window.date, a, b) for a, b in pieces if a < b]
        return out

    # -- protocol ---------------------------------------------------------------------

    @on(AvailabilityRequest)
    async def handle_request(self, request: AvailabilityRequest, agent: AgentDetail) -> None:
        response = AvailabilityResponse(
            meeting_id=request.meeting_id,
            participant=self.name,
            time_slot=request.time_slot,
            available=self.is_free(request.time_slot),
        )
        await self.send_message(agent.id, response)

    @on(CalendarRequest)
    async def handle_calendar(self, request: CalendarRequest, agent: AgentDetail) -> None:
        free = self.free_windows(request.dates, request.earliest, request.latest)
        await self.send_message(agent.id, CalendarReply(request.request, self.name, free))

    @on(BookingProposal)
    async def handle_booking(self, proposal: BookingProposal, agent: AgentDetail) -> None:
        slot = proposal.time_slot
        if self.is_free(slot, proposal.min_gap, ignore=proposal.meeting_id):
            self.bookings[proposal.meeting_id] = dataclasses.replace(slot)
            reply = BookingReply(proposal.meeting_id, self.name, True)
        else:
            reply = BookingReply(proposal.meeting_id, self.name, False, "not free then")
        await self.send_message(agent.id, reply)

    @on(MeetingCancelled)
    async def handle_cancel(self, cancelled: MeetingCancelled) -> None:
        self.bookings.pop(cancelled.meeting_id, None)
        self.scheduled_meetings.pop(cancelled.meeting_id, None)

    @on(MeetingScheduled)
    async def handle_scheduled(self, scheduled: MeetingScheduled) -> None:
        if self.name in scheduled.participants:
            self.scheduled_meetings[scheduled.meeting_id] = scheduled.time_slot
