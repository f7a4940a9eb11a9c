"""Synthetic webhooks: the events Cal.com would have sent for a booking as API v2 shows it now.

The reconciler (`shared.reconcile`) queues them for bookings the webhooks never delivered or left stale,
in the standard envelope `{triggerEvent, createdAt, payload}`, so the sync treats them like any other
delivery. `createdAt` is the booking row's last change in Cal.com.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.calcom.api import ApiBooking, api_timestamp
from shared.calcom.lineage import CALCOM_ICAL_SUFFIX
from shared.calcom.triggers import Trigger

#: Cal.com starts a host "request reschedule" reason with this (and sends its cancel without status).
REQUEST_RESCHEDULE_PREFIX = "Please reschedule."
_WEBHOOK_STATUS = {"accepted": "ACCEPTED", "pending": "PENDING", "cancelled": "CANCELLED", "rejected": "REJECTED"}


def lineage_key_of(booking: ApiBooking) -> str:
    """Same rule as `shared.calcom.lineage.lineage_key`: `icsUid`, else ``<uid>@Cal.com``."""
    return booking.ics_uid or f"{booking.uid}{CALCOM_ICAL_SUFFIX}"


def _is_request_reschedule(booking: ApiBooking) -> bool:
    return booking.status == "cancelled" and (booking.cancellation_reason or "").startswith(REQUEST_RESCHEDULE_PREFIX)


def _payload(booking: ApiBooking, *, status: str | None, reschedule: bool) -> dict[str, Any]:
    host = next(h for h in booking.hosts if h.email)
    attendees = [
        {
            key: value
            for key, value in (
                ("email", a.email),
                ("name", a.name),
                ("timeZone", a.time_zone),
                ("phoneNumber", a.phone_number),
            )
            if value is not None
        }
        for a in booking.attendees
        if a.email
    ]
    responses = {
        slug: {"label": slug, "value": value}
        for slug, value in sorted((booking.booking_fields_responses or {}).items())
        if value is not None
    }
    seated = any(a.seat_uid for a in booking.attendees)
    payload: dict[str, Any] = {
        "uid": booking.uid,
        "bookingId": booking.id,
        "iCalUID": booking.ics_uid,
        "startTime": api_timestamp(booking.start),
        "endTime": api_timestamp(booking.end),
        "eventTypeId": booking.event_type_id
        if booking.event_type_id is not None
        else (booking.event_type.id if booking.event_type else None),
        "type": (booking.event_type.slug or None) if booking.event_type else None,
        "organizer": {k: v for k, v in (("id", host.id), ("email", host.email), ("name", host.name)) if v is not None},
        "attendees": attendees,
        "responses": responses or None,
        "location": booking.location,
        "status": status,
        "rescheduleUid": booking.rescheduled_from_uid if reschedule else None,
        "cancellationReason": booking.cancellation_reason if booking.status == "cancelled" else None,
        # The parser only reads "is this seated"; API v2 does not expose the slot's seat count.
        "seatsPerTimeSlot": max(1, len(attendees)) if seated else None,
    }
    # JSON.stringify drops undefined keys; so does the bridge (and the body stays deterministic).
    return {key: value for key, value in payload.items() if value is not None}


def synthetic_webhook(
    booking: ApiBooking, trigger: Trigger, *, at: datetime, status: str | None, reschedule: bool = False
) -> dict[str, Any]:
    """One webhook document in the standard envelope, as Cal.com would have sent it for this change."""
    return {
        "triggerEvent": trigger.value,
        "createdAt": api_timestamp(at),
        "payload": _payload(booking, status=status, reschedule=reschedule),
    }


def synthetic_webhooks(booking: ApiBooking, *, missing: bool) -> tuple[dict[str, Any], ...]:
    """The events that bring the bridge to Cal.com's current view of `booking`.

    The last event carries the booking's current status at its last change (`changed_at`). A booking
    that came from a reschedule links to its predecessor with BOOKING_RESCHEDULED; when it is no longer
    active and the bridge never saw it, the link is sent first (at the booking's creation) so the chain
    head moves to it before it is cancelled/rejected, as the two webhooks would have done.
    """
    status = booking.status
    at = booking.changed_at
    from_reschedule = booking.rescheduled_from_uid is not None
    wire_status = _WEBHOOK_STATUS[status]
    if status in ("accepted", "pending"):
        if from_reschedule:
            return (
                synthetic_webhook(booking, Trigger.BOOKING_RESCHEDULED, at=at, status=wire_status, reschedule=True),
            )
        trigger = Trigger.BOOKING_CREATED if status == "accepted" else Trigger.BOOKING_REQUESTED
        return (synthetic_webhook(booking, trigger, at=at, status=wire_status),)
    documents: list[dict[str, Any]] = []
    if missing and from_reschedule:
        link_status = "PENDING" if status == "rejected" else "ACCEPTED"
        documents.append(
            synthetic_webhook(
                booking, Trigger.BOOKING_RESCHEDULED, at=booking.created_at, status=link_status, reschedule=True
            )
        )
    if status == "rejected":
        documents.append(synthetic_webhook(booking, Trigger.BOOKING_REJECTED, at=at, status=wire_status))
    else:
        # A host "request reschedule" cancel has no status key; the sync recognises it by that.
        cancel_status = None if _is_request_reschedule(booking) else wire_status
        documents.append(synthetic_webhook(booking, Trigger.BOOKING_CANCELLED, at=at, status=cancel_status))
    return tuple(documents)
