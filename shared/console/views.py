"""Pure: audit records, lineage state, review items and FHIR resources → the console's view models.

No I/O and no clock (the caller passes `now`). Records are plain `{field: text}` dicts as the audit
trail returns them; nothing here depends on their keys or on which fields a record has.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from shared.calcom.lineage import lineage_hash
from shared.console.query import SearchQuery
from shared.console.view_models import (
    AppointmentSummary,
    Backlog,
    BookingSummary,
    ParticipantRef,
    ReviewRow,
    SlotSummary,
    TimelineEntry,
    Tone,
)
from shared.contracts.tables import OPERATOR_AUDIT_PREFIX as OPERATOR_PREFIX
from shared.domain.decide import appointment_view
from shared.domain.lineage_state import LineageState

Record = Mapping[str, str]

#: Outcomes that need nobody: the event was applied, recognised as already applied, or recorded.
OK_OUTCOMES = frozenset(
    {"applied", "duplicate", "stale", "recorded", "deferred", "drift_repaired", "verified", "in_sync", "skipped"}
)
#: Fields with a column of their own in a timeline (every other field is listed under "more").
_SHOWN = frozenset(
    {
        "pk",
        "sk",
        "lineage",
        "calcom_created_at",
        "trigger",
        "outcome",
        "actor_role",
        "actor_ref",
        "received_at",
        "applied_at",
        "booking_uid",
        "ehr_resource",
        "ehr_version",
        "reason",
        "config_revision",
        "routing_form",
    }
)
LINEAGE_PREFIX = "lineage#"
#: Audit partitions that belong to a booking (routing forms and DLQ actions have their own views).
BOOKING_PREFIXES = (LINEAGE_PREFIX, "unresolved#")


def lineage_ref(lineage: str) -> str:
    """The lineage's SHA-256: the queue's FIFO group id, and the `lineage_hash` of its review items."""
    return lineage_hash(lineage)


def operator_partition(lineage: str) -> str:
    """Where operator actions on a booking are recorded (`AuditTrail.record_operator_action` subject)."""
    return f"{OPERATOR_PREFIX}{LINEAGE_PREFIX}{lineage}"


def is_operator(record: Record) -> bool:
    return record.get("actor_role") == "operator" or record.get("pk", "").startswith(OPERATOR_PREFIX)


def tone_of(record: Record) -> Tone:
    if is_operator(record):
        return "operator"
    return "ok" if record.get("outcome", "") in OK_OUTCOMES else "attention"


def activity_time(record: Record) -> str:
    """When it happened: Cal.com's time of the event, else when the bridge processed or received it."""
    return record.get("calcom_created_at") or record.get("applied_at") or record.get("received_at") or ""


def _sort_key(record: Record) -> tuple[str, str, str]:
    return (activity_time(record), record.get("applied_at", ""), record.get("sk", ""))


def timeline_entry(record: Record) -> TimelineEntry:
    actor_ref = record.get("actor_ref", "")
    role = record.get("actor_role", "")
    # A keyed hash is shortened; an operator's name (not a patient's) is shown whole.
    actor = f"{role}:{actor_ref if role == 'operator' else actor_ref[:8]}" if role else ""
    version = record.get("ehr_version", "")
    resource = record.get("ehr_resource", "")
    kind, _, resource_id = resource.partition("/")
    short_id = f"{resource_id[:8]}…" if len(resource_id) > 9 else resource_id
    return TimelineEntry(
        at=activity_time(record),
        trigger=record.get("trigger") or ("operator" if is_operator(record) else ""),
        outcome=record.get("outcome", ""),
        tone=tone_of(record),
        booking_uid=record.get("booking_uid", ""),
        reason=record.get("reason", ""),
        ehr=resource + (f" v{version}" if version else "") if resource else "",
        ehr_short=f"{kind}/{short_id}" + (f" v{version[:8]}" if version else "") if resource else "",
        config_revision=record.get("config_revision", ""),
        routing_form=record.get("routing_form", ""),
        actor=actor,
        received_at=record.get("received_at", ""),
        applied_at=record.get("applied_at", ""),
        extra=tuple(sorted((k, v) for k, v in record.items() if k not in _SHOWN and v)),
    )


def timeline(records: Iterable[Record]) -> tuple[TimelineEntry, ...]:
    """Oldest first, by Cal.com time, then processing time (whatever the table's sort key is)."""
    return tuple(timeline_entry(r) for r in sorted(records, key=_sort_key))


# -- search -----------------------------------------------------------------------------------------
def _in_range(value: str, query: SearchQuery) -> bool:
    day = value[:10]
    if not day:
        return False
    if query.date_from and day < query.date_from.isoformat():
        return False
    return not (query.date_to and day > query.date_to.isoformat())


def record_matches(record: Record, query: SearchQuery) -> bool:
    """Whether one audit record satisfies the record-level filters (trigger, outcome, reason, uid, and the
    date range when it applies to activity). A reason matches exactly or as the code before `:`."""
    if query.trigger and record.get("trigger") != query.trigger:
        return False
    if query.outcome and record.get("outcome") != query.outcome:
        return False
    if query.reason and not (
        record.get("reason") == query.reason or record.get("reason", "").startswith(f"{query.reason}:")
    ):
        return False
    if query.uid and record.get("booking_uid") != query.uid:
        return False
    return not (query.date_of == "activity" and (query.date_from or query.date_to)) or _in_range(
        activity_time(record), query
    )


def has_record_filters(query: SearchQuery) -> bool:
    """Whether any filter applies to audit records (else every booking matches at the record level)."""
    dated = query.date_of == "activity" and bool(query.date_from or query.date_to)
    return bool(query.uid or query.trigger or query.outcome or query.reason or dated)


def needs_state(query: SearchQuery) -> bool:
    """Filters only the lineage state can answer: the event type and the appointment's date."""
    return bool(query.event_type) or (query.date_of == "appointment" and bool(query.date_from or query.date_to))


def slot_matches(slot: SlotSummary | None, query: SearchQuery, event_type_id: str = "") -> bool:
    if query.event_type and (slot is None or query.event_type not in (slot.event_type, event_type_id)):
        return False
    if query.date_of == "appointment" and (query.date_from or query.date_to):
        return slot is not None and _in_range(slot.start, query)
    return True


def booking_partitions(records: Iterable[Record]) -> dict[str, list[Record]]:
    """Records grouped by booking partition; routing forms and DLQ actions are left out."""
    grouped: dict[str, list[Record]] = {}
    for record in records:
        pk = record.get("pk", "")
        if pk.startswith(BOOKING_PREFIXES):
            grouped.setdefault(pk, []).append(record)
    return grouped


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def slot_summary(state: LineageState) -> SlotSummary | None:
    """What the bridge's state says the Appointment is (None before a booking event was applied)."""
    view = appointment_view(state)
    if view is None:
        return None
    details = view.details
    siu = state.siu
    return SlotSummary(
        status=view.status,
        start=_iso(details.start),
        end=_iso(details.end),
        head_uid=view.head_uid,
        event_type=details.event_type_slug or (str(details.event_type_id) if details.event_type_id else ""),
        cancel_kind=view.cancel_kind or "",
        visit_kind=view.visit_kind or "",
        ehr_route=state.ehr_route or "",
        appointment=f"Appointment/{state.appointment_id}" if state.appointment_id else "",
        appointment_version=state.appointment_version or "",
        siu=f"{siu.event} {siu.control_id}" if siu else "",
        patients=len(view.patients),
    )


def event_type_id(state: LineageState) -> str:
    view = appointment_view(state)
    return str(view.details.event_type_id) if view and view.details.event_type_id is not None else ""


def summarize(
    partition: str,
    records: Sequence[Record],
    *,
    slot: SlotSummary | None = None,
    uids: Iterable[str] = (),
    open_reviews: Iterable[str] = (),
) -> BookingSummary:
    ordered = sorted(records, key=_sort_key)
    last = ordered[-1] if ordered else {}
    lineage = partition.removeprefix(LINEAGE_PREFIX) if partition.startswith(LINEAGE_PREFIX) else ""
    all_uids = {r["booking_uid"] for r in ordered if r.get("booking_uid")} | set(uids)
    return BookingSummary(
        lineage=lineage,
        uids=tuple(sorted(all_uids)),
        first_activity=activity_time(ordered[0]) if ordered else "",
        last_activity=activity_time(last),
        last_outcome=last.get("outcome", ""),
        tone=tone_of(last) if last else "ok",
        records=len(ordered),
        slot=slot,
        open_reviews=tuple(sorted(set(open_reviews))),
        partition="" if lineage else partition,
    )


# -- review backlog -----------------------------------------------------------------------------------
def _parse_time(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def age_text(seconds: float) -> str:
    """`45s`, `12m`, `5h 3m`, `3d 4h`."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if hours < 1:
        return f"{minutes}m"
    if days < 1:
        return f"{hours}h {minutes % 60}m"
    return f"{days}d {hours % 24}h"


def review_row(item: Mapping[str, str], now: datetime) -> ReviewRow:
    parked = _parse_time(item.get("parked_at", ""))
    age = (now - parked).total_seconds() if parked else 0.0
    closed = item.get("closed_at", "")
    if closed:
        closed = f"{item.get('status', '')} {closed} by {item.get('closed_by', '')}".strip()
    return ReviewRow(
        review_id=item.get("pk", ""),
        status=item.get("status", ""),
        reason=item.get("reason", ""),
        detail=item.get("detail", ""),
        trigger=item.get("trigger", ""),
        parked_at=item.get("parked_at", ""),
        age=age_text(age) if parked else "",
        age_seconds=age,
        lineage_ref=item.get("lineage_hash", ""),
        closed=closed,
        lineage=item.get("lineage", ""),
        booking_uid=item.get("booking_uid", ""),
    )


def backlog(items: Iterable[Mapping[str, str]], now: datetime) -> Backlog:
    """Open review items, oldest first, with their age and a count per reason."""
    rows = sorted(
        (review_row(i, now) for i in items if i.get("status") == "open"), key=lambda r: (-r.age_seconds, r.review_id)
    )
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.reason] = counts.get(row.reason, 0) + 1
    return Backlog(
        items=tuple(rows),
        open_items=len(rows),
        oldest_age=rows[0].age if rows else "",
        by_reason=tuple(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))),
    )


# -- the EHR's Appointment ------------------------------------------------------------------------------
def _codes(concept: Any) -> str:
    if not isinstance(concept, Mapping):
        return ""
    codings = concept.get("coding") or []
    parts = []
    for coding in codings if isinstance(codings, list) else []:
        if isinstance(coding, Mapping) and coding.get("code"):
            # Only coded values (a code and the display the code system gives it), never `text`.
            display = coding.get("display")
            parts.append(f"{coding['code']}" + (f" ({display})" if isinstance(display, str) and display else ""))
    return ", ".join(parts)


def appointment_summary(resource: Mapping[str, Any], version: str | None = None) -> AppointmentSummary:
    """Status, time, type and participants as references (minimum necessary). Names (`display`),
    reasons, comments and free text are not read, so they cannot be shown."""
    participants = []
    for participant in resource.get("participant") or []:
        if not isinstance(participant, Mapping):
            continue
        actor = participant.get("actor") if isinstance(participant.get("actor"), Mapping) else {}
        reference = str(actor.get("reference", "")) if actor else ""
        participants.append(
            ParticipantRef(
                reference=reference,
                kind=reference.split("/", 1)[0] if "/" in reference else "",
                status=str(participant.get("status", "")),
                required=str(participant.get("required", "")),
            )
        )
    meta = resource.get("meta") if isinstance(resource.get("meta"), Mapping) else {}
    return AppointmentSummary(
        reference=f"Appointment/{resource.get('id', '')}",
        version=version or str((meta or {}).get("versionId", "")),
        status=str(resource.get("status", "")),
        start=str(resource.get("start", "")),
        end=str(resource.get("end", "")),
        appointment_type=_codes(resource.get("appointmentType")),
        service_types=tuple(c for c in (_codes(s) for s in resource.get("serviceType") or []) if c),
        cancelation_reason=_codes(resource.get("cancelationReason")),
        participants=tuple(participants),
    )
