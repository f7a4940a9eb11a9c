"""Is the bridge behind what Cal.com shows for a booking? Pure: no I/O, no clock (and the message to queue)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from shared.calcom.api import ApiBooking
from shared.calcom.lineage import message_group_id
from shared.calcom.synthetic import synthetic_webhooks
from shared.calcom.webhook import parse_webhook
from shared.contracts import queue
from shared.domain.decide import AppointmentStatus, appointment_view, derive_status
from shared.domain.lineage_state import BookingDetails, LineageState
from shared.reconcile.report import RECONCILE_SOURCE, Assessment, ReconcileOptions
from shared.stores.queue import OutgoingMessage

SUPPORTED_STATUSES = frozenset({"accepted", "pending", "cancelled", "rejected"})
#: Bridge statuses (AppointmentView.status) that agree with an active Cal.com booking.
_ACTIVE = frozenset({"booked", "fulfilled", "noshow"})


# -- the pure part: staleness and synthetic webhooks --------------------------------------------
def uid_hash(uid: str) -> str:
    """What logs carry instead of a booking uid."""
    return hashlib.sha256(uid.encode("utf-8")).hexdigest()[:16]


def is_own_booking(booking: ApiBooking, options: ReconcileOptions) -> bool:
    value = (booking.metadata or {}).get(options.own_metadata_key)
    return value is not None and str(value) == options.own_metadata_value


def _agrees(calcom_status: str, bridge_status: AppointmentStatus) -> bool | None:
    """True: same; False: the bridge is behind (enqueue); None: the bridge is past it (absorbing)."""
    if calcom_status in ("cancelled", "rejected"):
        return bridge_status == "cancelled"
    if bridge_status == "cancelled":
        return None  # cancel/reject is absorbing: a synthetic event cannot undo it
    if calcom_status == "accepted":
        return bridge_status in _ACTIVE
    # Cal.com pending while the bridge has it accepted: the bridge is ahead (not re-openable).
    return True if bridge_status == "pending" else None


def _precheck(booking: ApiBooking, options: ReconcileOptions) -> Assessment | None:
    """Bookings the reconciler never turns into events, whatever the state says."""
    if is_own_booking(booking, options):
        return Assessment("own", "bridge_created")
    if booking.status not in SUPPORTED_STATUSES:
        return Assessment("unsupported", "status")
    if not any(h.email for h in booking.hosts):
        return Assessment("unsupported", "no_host")
    if booking.status == "cancelled" and booking.rescheduled_to_uid:
        # The old half of a reschedule: Cal.com sends no cancel for it; its successor carries the link.
        return Assessment("rescheduled_away", "successor")
    return None


def _differences(booking: ApiBooking, details: BookingDetails) -> list[str]:
    """Slot facts of an active booking that differ from what the bridge projects."""
    reasons: list[str] = []
    if details.start != booking.start or details.end != booking.end:
        reasons.append("times")
    host_id = next((h.id for h in booking.hosts if h.email), None)
    if host_id is not None and details.host_user_id is not None and host_id != details.host_user_id:
        reasons.append("host")
    event_type_id = booking.event_type_id
    if event_type_id is not None and details.event_type_id is not None and event_type_id != details.event_type_id:
        reasons.append("event_type")
    return reasons


def assess(booking: ApiBooking, state: LineageState, options: ReconcileOptions) -> Assessment:
    """Compare one booking with its lineage state. Pure: no I/O, no clock."""
    early = _precheck(booking, options)
    if early is not None:
        return early
    facts = state.uids.get(booking.uid)
    if facts is None or facts.details is None:
        return Assessment("missing", "not_in_state", synthetic_webhooks(booking, missing=True))
    if facts.superseded_by is not None:
        return Assessment("in_sync", "superseded")
    view = appointment_view(state)
    if view is not None and view.head_uid == booking.uid:
        bridge_status, details = view.status, view.details
    else:
        bridge_status = derive_status(facts, [p for p in state.participants.values() if p.present])
        details = facts.details
    agreement = _agrees(booking.status, bridge_status)
    if agreement is None:
        return Assessment("diverged", f"bridge_{bridge_status}")
    reasons = [] if agreement else ["status"]
    if booking.status in ("accepted", "pending"):
        reasons.extend(_differences(booking, details))
    if not reasons:
        return Assessment("in_sync", "same")
    return Assessment("stale", ",".join(reasons), synthetic_webhooks(booking, missing=False))


def outgoing_message(document: dict[str, Any]) -> OutgoingMessage:
    """The queue message for a synthetic webhook: the ingest contract, plus `source=reconcile`.

    The body is parsed back with the webhook parser first, so a synthetic event the sync could not
    read is never queued.
    """
    body = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    raw = body.encode("utf-8")
    parsed = parse_webhook(raw)
    if parsed.event is None:  # pragma: no cover - every trigger the reconciler writes is a booking trigger
        raise ValueError(f"synthetic {parsed.trigger_name} is not actionable")
    body_sha256 = hashlib.sha256(raw).hexdigest()
    return OutgoingMessage(
        body=body,
        group_id=message_group_id(parsed.event),
        deduplication_id=body_sha256,
        attributes={
            queue.TRIGGER_ATTRIBUTE: parsed.trigger_name,
            queue.SCHEMA_ATTRIBUTE: queue.MESSAGE_SCHEMA,
            queue.BODY_SHA256_ATTRIBUTE: body_sha256,
            queue.SOURCE_ATTRIBUTE: RECONCILE_SOURCE,
        },
    )
