"""The booking lineage key: what ties a first booking to its later reschedules, cancels and no-shows.

Rule (also in the README):

1. `iCalUID` when the payload has one. Cal.com sets it to ``<first uid>@Cal.com`` and keeps it across
   reschedules (A → B → C share it), so a chain is one lineage.
2. Otherwise ``<uid>@Cal.com`` - exactly the value Cal.com would have put in `iCalUID` for a first
   booking. Reject/confirm payloads (no iCalUID) of a first booking therefore land in the same lineage
   as its BOOKING_REQUESTED. No-show payloads carry only `bookingUid`; the sync side resolves the uid
   through its alias index, so a no-show of a rescheduled booking still finds its lineage.

The SQS FIFO MessageGroupId is a SHA-256 of the key: it orders a lineage's events, stays within SQS's
128-character limit and keeps calendar-provider iCalUIDs out of queue metadata.
"""

from __future__ import annotations

import hashlib

from shared.calcom.models import BookingEvent

CALCOM_ICAL_SUFFIX = "@Cal.com"


def lineage_key(event: BookingEvent) -> str:
    return event.ical_uid or f"{event.uid}{CALCOM_ICAL_SUFFIX}"


def lineage_hash(lineage: str) -> str:
    """The SHA-256 of a lineage key: its FIFO message group, and how logs, review items and drift checks
    name the lineage without its key."""
    return hashlib.sha256(lineage.encode("utf-8")).hexdigest()


def message_group_id(event: BookingEvent) -> str:
    return lineage_hash(lineage_key(event))
