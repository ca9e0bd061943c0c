"""The meeting scheduler plugin (tutorial: "Building a Distributed Meeting Scheduling System")."""

from __future__ import annotations

from .data import (
    AvailabilityRequest,
    AvailabilityResponse,
    BookingProposal,
    BookingReply,
    CalendarReply,
    CalendarRequest,
    Meeting,
    MeetingCancelled,
    MeetingOutput,
    MeetingScheduled,
    TimeConstraints,
    TimeSlot,
)
from .instance import Instance, InstanceError, parse_instance, solution_json
from .participant import ParticipantAgent
from .playground import MeetingPlugin, SchedulingPlayground, SchedulingRule
from .problem import Need, Placement, Problem, Solution, violations
from .solver import solve

__all__ = [
    "AvailabilityRequest",
    "AvailabilityResponse",
    "BookingProposal",
    "BookingReply",
    "CalendarReply",
    "CalendarRequest",
    "Instance",
    "InstanceError",
    "Meeting",
    "MeetingCancelled",
    "MeetingOutput",
    "MeetingPlugin",
    "MeetingScheduled",
    "Need",
    "ParticipantAgent",
    "Placement",
    "Problem",
    "SchedulingPlayground",
    "SchedulingRule",
    "Solution",
    "TimeConstraints",
    "TimeSlot",
    "parse_instance",
    "solution_json",
    "solve",
    "violations",
]
