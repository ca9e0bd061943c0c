"""The meeting scheduler's data and messages (tutorial names and fields).

``TimeSlot``, ``Meeting``, ``MeetingOutput``, ``AvailabilityRequest``,
``AvailabilityResponse`` and ``MeetingScheduled`` are the tutorial's; ``Meeting`` gains
``priority`` and ``required``, and ``TimeConstraints`` is its "Advanced Features" sketch.
The calendar and booking messages are how the shipped `SchedulingPlayground` learns
availability from, and books meetings with, the participants.
"""

from __future__ import annotations

import dataclasses

from transport import default_registry

__all__ = [
    "AvailabilityRequest",
    "AvailabilityResponse",
    "BookingProposal",
    "BookingReply",
    "CalendarReply",
    "CalendarRequest",
    "Meeting",
    "MeetingCancelled",
    "MeetingOutput",
    "MeetingScheduled",
    "PlanRequest",
    "PlanResult",
    "TimeConstraints",
    "TimeSlot",
]


@dataclasses.dataclass
class TimeSlot:
    date: str
    start_time: int
    end_time: int

    @property
    def duration(self) -> int:
        return self.end_time - self.start_time


@dataclasses.dataclass
class Meeting:
    name: str
    date: str
    duration: int
    minimum_participants: int
    priority: int = 1
    required: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class MeetingOutput:
    meeting_id: str
    name: str
    scheduled: bool
    time_slot: TimeSlot | None = None
    participants: list[str] = dataclasses.field(default_factory=list)
    error: str | None = None


@dataclasses.dataclass
class TimeConstraints:
    earliest_start: int = 9  # 9 AM
    latest_end: int = 17  # 5 PM
    min_gap: int = 1  # hours between two meetings of one person


@dataclasses.dataclass
class AvailabilityRequest:
    meeting_id: str
    time_slot: TimeSlot


@dataclasses.dataclass
class AvailabilityResponse:
    meeting_id: str
    participant: str
    time_slot: TimeSlot
    available: bool


@dataclasses.dataclass
class MeetingScheduled:
    meeting_id: str
    time_slot: TimeSlot
    participants: list[str]


@dataclasses.dataclass
class CalendarRequest:
    """Ask a participant when it is free on these dates (between the given hours)."""

    request: int
    dates: list[str]
    earliest: int
    latest: int


@dataclasses.dataclass
class CalendarReply:
    request: int
    participant: str
    free: list[TimeSlot]


@dataclasses.dataclass
class BookingProposal:
    """Ask a participant to hold this slot for a meeting."""

    meeting_id: str
    name: str
    time_slot: TimeSlot
    min_gap: int = 0


@dataclasses.dataclass
class BookingReply:
    meeting_id: str
    participant: str
    accepted: bool
    reason: str = ""


@dataclasses.dataclass
class MeetingCancelled:
    """A booking is released (the meeting was re-planned without this participant)."""

    meeting_id: str


@dataclasses.dataclass
class PlanRequest:
    """Ask a playground hosting the meeting plugin to plan `meetings` with the participant
    agents connected to it (send it with `ask()`; the reply is a `PlanResult`)."""

    meetings: list[Meeting]
    constraints: TimeConstraints | None = None
    time_limit: float | None = None


@dataclasses.dataclass
class PlanResult:
    outputs: list[MeetingOutput]


for _cls in (TimeSlot, Meeting, MeetingOutput, TimeConstraints, AvailabilityRequest,
             AvailabilityResponse, MeetingScheduled, CalendarRequest, CalendarReply,
             BookingProposal, BookingReply, MeetingCancelled, PlanRequest,
             PlanResult):  # fmt: skip
    default_registry.register(_cls, tag=f"ceylon.scheduling.{_cls.__name__}")
