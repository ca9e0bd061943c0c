"""The meeting-scheduling tutorial, assembled from its snippets as a user would.

    python examples/meeting_scheduling.py

The classes, handlers and data are the tutorial's ("Building a Distributed Meeting
Scheduling System with Ceylon"); the methods it calls but does not show
(start_scheduling, try_next_slot, track_response, can_schedule, ...) are filled in the
way its text describes: walk the hours from 9 and take the first people who say yes. It
is the tutorial's own algorithm, not the shipped scheduler (examples/meeting_plugin.py):
it may double-book people, which is what the shipped one exists to fix.
"""

import asyncio
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from loguru import logger

from ceylon import AgentDetail, BaseAgent, PeerMode, on
from ceylon.base.playground import BasePlayGround


@dataclass
class TimeSlot:
    date: str
    start_time: int
    end_time: int

    @property
    def duration(self):
        return self.end_time - self.start_time


@dataclass
class Meeting:
    name: str
    date: str
    duration: int
    minimum_participants: int


@dataclass
class MeetingOutput:
    meeting_id: str
    name: str
    scheduled: bool
    time_slot: Optional[TimeSlot] = None
    participants: List[str] = field(default_factory=list)
    error: Optional[str] = None


@dataclass
class AvailabilityRequest:
    meeting_id: str
    time_slot: TimeSlot


@dataclass
class AvailabilityResponse:
    meeting_id: str
    participant: str
    time_slot: TimeSlot
    available: bool


@dataclass
class MeetingScheduled:
    meeting_id: str
    time_slot: TimeSlot
    participants: List[str]


class ParticipantAgent(BaseAgent):
    def __init__(self, name: str, available_slots: List[TimeSlot]):
        super().__init__(
            name=name,
            mode=PeerMode.CLIENT,
            role="participant"
        )
        self.available_slots = available_slots
        self.scheduled_meetings: Dict[str, TimeSlot] = {}

    @staticmethod
    def has_overlap(slot1: TimeSlot, slot2: TimeSlot, duration: int) -> bool:
        latest_start = max(slot1.start_time, slot2.start_time)
        earliest_end = min(slot1.end_time, slot2.end_time)
        return earliest_end - latest_start >= duration

    @on(AvailabilityRequest)
    async def handle_request(self, request: AvailabilityRequest,
                             time: int, agent: AgentDetail):
        # Check availability and respond
        is_available = any(
            self.has_overlap(slot, request.time_slot,
                             request.time_slot.duration)
            for slot in self.available_slots
        )
        response = AvailabilityResponse(
            meeting_id=request.meeting_id,
            participant=self.name,
            time_slot=request.time_slot,
            available=is_available
        )
        await self.broadcast_message(response)


class SchedulingPlayground(BasePlayGround):
    def __init__(self, name="meeting_scheduler", port=8888):
        super().__init__(name=name, port=port)
        self.meetings: Dict[str, Meeting] = {}
        self.current_slots: Dict[str, TimeSlot] = {}
        self.responses: Dict[str, Dict[str, List[str]]] = {}
        self.scheduled_meetings: Dict[str, MeetingScheduled] = {}
        self._meeting_completed_events: Dict[str, asyncio.Event] = {}
        self._completed_meetings: Dict[str, MeetingOutput] = {}

    async def schedule_meetings(self, meetings: List[Meeting],
                                participants: List[ParticipantAgent]):
        # Store meetings and create completion events
        self.meetings = {str(i): meeting for i, meeting in enumerate(meetings)}
        self._meeting_completed_events = {i: asyncio.Event() for i in self.meetings}

        # Start scheduling process
        async with self.play(workers=participants) as active_playground:
            # Initialize scheduling for each meeting
            for meeting_id, meeting in self.meetings.items():
                await self.start_scheduling(meeting_id, meeting)

            # Wait for completion
            await self.wait_for_completion()
            return self.get_completed_meetings()

    # -- filled in: what the tutorial calls but does not show -------------------------

    async def start_scheduling(self, meeting_id: str, meeting: Meeting):
        logger.info(f"Meeting: {meeting.name}")
        slot = TimeSlot(meeting.date, 9, 9 + meeting.duration)
        await self.ask(meeting_id, slot)

    async def ask(self, meeting_id: str, slot: TimeSlot):
        logger.info(f"- Checking slot: {slot.start_time}:00")
        self.current_slots[meeting_id] = slot
        self.responses.setdefault(meeting_id, {})[str(slot.start_time)] = []
        await self.broadcast_message(AvailabilityRequest(meeting_id, slot))

    def is_valid_meeting(self, meeting_id: str) -> bool:
        return meeting_id in self.meetings and meeting_id not in self._completed_meetings

    async def try_next_slot(self, meeting_id: str):
        current = self.current_slots[meeting_id]
        meeting = self.meetings[meeting_id]
        if current.end_time + 1 > 17:
            self._complete_meeting(meeting_id, False, error="No suitable time slot found")
            return
        await self.ask(meeting_id, TimeSlot(meeting.date, current.start_time + 1,
                                            current.end_time + 1))

    def track_response(self, response: AvailabilityResponse):
        self.responses[response.meeting_id][str(response.time_slot.start_time)].append(
            response.participant)

    def get_available_participants(self, meeting_id: str) -> List[str]:
        return self.responses[meeting_id][str(self.current_slots[meeting_id].start_time)]

    def can_schedule(self, meeting_id: str) -> bool:
        available = self.get_available_participants(meeting_id)
        return len(available) >= self.meetings[meeting_id].minimum_participants

    async def wait_for_completion(self):
        for event in self._meeting_completed_events.values():
            await event.wait()

    def get_completed_meetings(self) -> Dict[str, MeetingOutput]:
        return dict(self._completed_meetings)

    # -- the tutorial's handlers ------------------------------------------------------

    @on(AvailabilityResponse)
    async def handle_response(self, response: AvailabilityResponse,
                              time: int, agent: AgentDetail):
        try:
            meeting_id = response.meeting_id
            if not self.is_valid_meeting(meeting_id):
                return
            if response.time_slot != self.current_slots[meeting_id]:
                return  # an answer about a slot already given up

            # Handle unavailable time slots
            if not response.available:
                await self.try_next_slot(meeting_id)
                return

            # Track responses
            self.track_response(response)

            # Try scheduling
            if self.can_schedule(meeting_id):
                await self.schedule_meeting(meeting_id)
        except Exception as e:
            logger.error(f"Error handling response: {e}")
            self._complete_meeting(meeting_id, False,
                                   error=f"Processing error: {str(e)}")

    async def schedule_meeting(self, meeting_id: str):
        current_slot = self.current_slots[meeting_id]
        available_participants = self.get_available_participants(meeting_id)

        scheduled = MeetingScheduled(
            meeting_id=meeting_id,
            time_slot=current_slot,
            participants=available_participants
        )
        await self.broadcast_message(scheduled)
        self._complete_meeting(meeting_id, True, scheduled)

    def _complete_meeting(self, meeting_id: str, success: bool,
                          scheduled: Optional[MeetingScheduled] = None,
                          error: Optional[str] = None):
        """Record meeting completion status"""
        logger.info(f"Completing meeting {meeting_id}")
        logger.info(f"Success: {success}")
        if error:
            logger.error(f"Error: {error}")

        # Record completion
        output = MeetingOutput(
            meeting_id=meeting_id,
            name=self.meetings[meeting_id].name,
            scheduled=success,
            error=error
        )

        if success and scheduled:
            output.time_slot = scheduled.time_slot
            output.participants = scheduled.participants

        self._completed_meetings[meeting_id] = output
        self._meeting_completed_events[meeting_id].set()


async def main():
    # Define meetings to schedule
    meetings = [
        Meeting("Team Sync", "2024-07-21", 1, 3),
        Meeting("Project Review", "2024-07-21", 2, 2)
    ]

    # Create participants (the tutorial's four people, as in shared/meetings tiny_1)
    participants = [
        ParticipantAgent("Alice", [TimeSlot("2024-07-21", 9, 12), TimeSlot("2024-07-21", 14, 17)]),
        ParticipantAgent("Bob", [TimeSlot("2024-07-21", 10, 13), TimeSlot("2024-07-21", 15, 18)]),
        ParticipantAgent("Charlie", [TimeSlot("2024-07-21", 11, 14), TimeSlot("2024-07-21", 16, 18)]),
        ParticipantAgent("David", [TimeSlot("2024-07-21", 9, 11), TimeSlot("2024-07-21", 13, 16)]),
    ]

    # Create playground
    playground = SchedulingPlayground(port=8455)
    results = await playground.schedule_meetings(meetings, participants)
    for meeting_id, output in results.items():
        if output.scheduled:
            slot = output.time_slot
            print(f"{output.name}: {slot.date} {slot.start_time}-{slot.end_time} "
                  f"with {', '.join(output.participants)}")
        else:
            print(f"{output.name}: not scheduled ({output.error})")


if __name__ == "__main__":
    asyncio.run(main())
