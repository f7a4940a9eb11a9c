"""Reference model of the sync spec: what the EHR Appointment of each lineage must say.

Written from docs/sync-semantics.md, docs/configure-clinic.md and Cal.com's wire contract only, never
from the bridge's code: it is the oracle the decision core is compared with. It replays the *delivered*
webhook documents in Cal.com's chronological order like a person reading Cal.com's booking table, and
applies the spec's precedence rules where the documents themselves disagree.

"Expected" is what can be concluded from the delivered events alone. A webhook that never arrived is
unknown to the bridge until the reconciler replays it, so e.g. with a lost BOOKING_RESCHEDULED the head
is chosen among the uids that were seen (rule 1), and a no-show for a uid no delivered event names stays
deferred (no Appointment for it).

Decisions and the rule behind each (rule numbers of docs/sync-semantics.md, "Precedence rules"):

* Lineage: `iCalUID`, else ``<uid>@Cal.com``; a BOOKING_RESCHEDULED joins the lineage of its
  `rescheduleUid`, a BOOKING_NO_SHOW_UPDATED the lineage that knows its `bookingUid` ("Booking lineage").
  Any event of a uid a lineage already knows joins that lineage: the spec places reject/confirm
  payloads by ``<uid>@Cal.com``, which is the first booking's lineage only for a first booking; the
  confirm of a rebooking that needed confirmation (BOOKING_REQUESTED with `rescheduleUid`) belongs to
  the chain it continues.
* Head (rule 1): among the uids no delivered reschedule superseded, the highest `iCalSequence`, then the
  latest `createdAt` of the uid's booking event (CREATED/REQUESTED/RESCHEDULED: when that booking was
  made; when none was delivered, the booking row a MEETING_ENDED carries, and only then a cancel's
  time). A cancel's sequence counts minus its own +1 bump (Cal.com bumps the row on cancel).
* Details (rule 2): start, end, event type and host of a uid come from its latest non-cancel event by
  `createdAt`; a cancel or reject supplies them only when nothing else did. MEETING_ENDED is timed by
  the row's `updatedAt` it carries (rule 6).
* Status (rule 3): cancelled/rejected/"request reschedule" of the head is absorbing in any order >
  every present patient marked no-show > meeting ended > accepted > requested only.
* Patients (rule 4, README "Guests are not patients"): the booker (`attendees[0]`), or every attendee of
  a seated event; a seat cancel (a cancel with `seatsPerTimeSlot`) removes only the attendees it lists;
  a person is present when their latest add is newer than their latest removal. The spec is silent on
  the last seat leaving: the model, like a reader of the history, calls that booking cancelled (``oth``).
* No-show (rule 5): per person, latest `createdAt` wins; `noshow` only when every present patient is
  marked (a lineage with nobody present is not a no-show). A mark belongs to the booking it names
  (Cal.com keeps `noShow` on that booking's attendee row): a rebooking after a no-show "books the
  appointment again" (rule 3) and is not a no-show until marked itself. The spec does not say this
  outright.
* appointmentType: the clinic mapping's v2-0276 code of the event type; `by-visit-kind` event types
  (rule 8) are out of this model's scope and come back as the literal ``by-visit-kind``.
* cancelationReason: ``oth`` for a cancel, ``prov`` for a host's reject, ``prov-resched`` for a host's
  "request reschedule" ("What the EHR receives"; the spec lists the codes, this pairing is the model's).
* Booking uids: every uid of the lineage named by a delivered event, superseded ones included.

Not modelled: routing forms (rule 7), Locations, free text, BOOKING_PAID/PAYMENT_INITIATED (ignored
triggers), a calendar provider replacing `iCalUID` mid-chain.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from shared.clinic.mapping import ClinicConfig, PractitionerMapping
from shared.clinic.source import load_config

Status = Literal["pending", "booked", "fulfilled", "noshow", "cancelled"]
DEMO_CLINIC = "file:devstack/demo/clinic.yaml"
CANCEL_CODES = {"cancelled": "oth", "rejected": "prov", "reschedule_requested": "prov-resched"}
_BOOKING_MOMENTS = {"BOOKING_CREATED", "BOOKING_REQUESTED", "BOOKING_RESCHEDULED"}
_APPLIED = _BOOKING_MOMENTS | {"BOOKING_CANCELLED", "BOOKING_REJECTED", "BOOKING_NO_SHOW_UPDATED", "MEETING_ENDED"}


@dataclass(frozen=True)
class Expected:
    """What one lineage's EHR Appointment says, in Cal.com's terms (e-mails, uids, mapping keys)."""

    status: Status
    start: datetime
    end: datetime
    #: Lower-cased e-mails of the present patients.
    patients: frozenset[str]
    #: `practitioner_key` of the clinic mapping entry of the host (None: unmapped).
    practitioner: str | None
    appointment_type: str | None
    cancelation_reason: str | None
    booking_uids: frozenset[str]


def practitioner_key(mapping: PractitionerMapping | None) -> str | None:
    """How a mapped host is named in `Expected`: its Practitioner reference, else ``npi:<npi>``."""
    if mapping is None:
        return None
    return mapping.reference or f"npi:{mapping.npi}"


@dataclass
class _Booking:
    """One Cal.com booking row (uid) as the delivered events describe it."""

    uid: str
    sequence: int | None = None
    details: tuple[Any, ...] | None = None  # (start, end, event type id, slug, host id, host e-mail)
    details_rank: tuple[bool, datetime] | None = None  # (not from a cancel, createdAt): rule 2
    booked_at: tuple[int, datetime] | None = None  # (how telling the event is, its time): rule 1
    requested: bool = False
    accepted: bool = False
    ended: bool = False
    cancel: tuple[datetime, str] | None = None
    superseded: bool = False
    seats_left: bool = False  # a seat cancel was seen


@dataclass
class _Lineage:
    bookings: dict[str, _Booking] = field(default_factory=dict)
    added: dict[str, datetime] = field(default_factory=dict)
    removed: dict[str, datetime] = field(default_factory=dict)
    #: (uid the mark names, person) -> (createdAt, marked); uid "" under NO_SHOW_LINEAGE_WIDE.
    no_show: dict[tuple[str, str], tuple[datetime, bool]] = field(default_factory=dict)

    def booking(self, uid: str) -> _Booking:
        return self.bookings.setdefault(uid, _Booking(uid))


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _latest(marks: dict[str, datetime], person: str, at: datetime) -> None:
    if person not in marks or at > marks[person]:
        marks[person] = at


def _cancel_kind(trigger: str, body: Mapping[str, Any]) -> str:
    if trigger == "BOOKING_REJECTED":
        return "rejected"
    reason = body.get("cancellationReason") or ""
    return (
        "reschedule_requested"
        if body.get("status") is None and reason.startswith("Please reschedule.")
        else "cancelled"
    )


def _merge(lineage: _Lineage, trigger: str, at: datetime, body: Mapping[str, Any]) -> None:
    """Fold one booking event (not a no-show) into its lineage."""
    row = lineage.booking(body["uid"])
    seated = body.get("seatsPerTimeSlot") is not None
    emails = [str(a["email"]).strip().lower() for a in body.get("attendees") or []]
    seat_cancel = trigger == "BOOKING_CANCELLED" and seated
    cancel_like = trigger in ("BOOKING_CANCELLED", "BOOKING_REJECTED")
    if seat_cancel:  # rule 4: only the listed seats leave; the booking itself stays accepted
        for person in emails:
            _latest(lineage.removed, person, at)
        row.accepted = row.seats_left = True
    else:
        for person in emails if seated else emails[:1]:  # guests are not patients
            _latest(lineage.added, person, at)
    if cancel_like and not seat_cancel and (row.cancel is None or at >= row.cancel[0]):
        row.cancel = (at, _cancel_kind(trigger, body))
    sequence = body.get("iCalSequence")
    if sequence is not None:  # rule 1: a cancel's own +1 bump does not rank its uid higher
        sequence -= 1 if cancel_like and not seat_cancel else 0
        row.sequence = sequence if row.sequence is None else max(row.sequence, sequence)
    if trigger == "BOOKING_REQUESTED":
        row.requested = True
    if trigger in ("BOOKING_CREATED", "BOOKING_RESCHEDULED"):
        row.accepted = True
    if trigger == "MEETING_ENDED":
        row.ended = True
    if trigger in _BOOKING_MOMENTS and body.get("rescheduleUid"):  # also a rebooking that awaits confirmation
        lineage.booking(body["rescheduleUid"]).superseded = True
    organizer = body.get("organizer") or body.get("user") or {}
    host_id = organizer.get("id") if "organizer" in body else body.get("userId")
    details = (_utc(body["startTime"]), _utc(body["endTime"]), body.get("eventTypeId"), body.get("type"))
    # When the booking was made: its booking event, else the row a MEETING_ENDED carries, else a cancel.
    moment = (2 if trigger in _BOOKING_MOMENTS else 1 if trigger == "MEETING_ENDED" else 0, at)
    if row.booked_at is None or moment > row.booked_at:
        row.booked_at = moment
    rank = (not cancel_like, at)
    if row.details_rank is None or rank >= row.details_rank:  # rule 2
        row.details, row.details_rank = (*details, host_id, organizer.get("email")), rank


def _head(lineage: _Lineage) -> _Booking | None:
    """Rule 1: the unsuperseded uid with the highest iCalSequence, then the latest createdAt."""
    candidates = [b for b in lineage.bookings.values() if b.details is not None and not b.superseded]
    if not candidates:
        return None

    def rank(b: _Booking) -> tuple[int, datetime, str]:
        assert b.booked_at is not None
        return (-1 if b.sequence is None else b.sequence, b.booked_at[1], b.uid)

    return max(candidates, key=rank)


def _status(head: _Booking, lineage: _Lineage, present: frozenset[str], scope: str) -> Status:
    """Rule 3 (with rule 5 for no-shows of the head booking)."""
    if head.cancel is not None or (head.seats_left and not present):
        return "cancelled"
    if present and all(lineage.no_show.get((scope, p), (None, False))[1] for p in present):
        return "noshow"
    if head.ended:
        return "fulfilled"
    if head.accepted:
        return "booked"
    return "pending" if head.requested else "booked"


def _expected(lineage: _Lineage, clinic: ClinicConfig) -> Expected | None:
    head = _head(lineage)
    if head is None or head.details is None:
        return None
    present = frozenset(p for p, at in lineage.added.items() if p not in lineage.removed or at > lineage.removed[p])
    start, end, type_id, slug, host_id, host_email = head.details
    event_type = clinic.event_type(type_id, slug)
    status = _status(head, lineage, present, head.uid)
    reason = CANCEL_CODES[head.cancel[1] if head.cancel else "cancelled"] if status == "cancelled" else None
    return Expected(
        status=status,
        start=start,
        end=end,
        patients=present,
        practitioner=practitioner_key(clinic.practitioner(host_id, host_email)),
        appointment_type=event_type.appointment_type if event_type else None,
        cancelation_reason=reason,
        booking_uids=frozenset(lineage.bookings),
    )


def expected_appointments(
    history: Iterable[Mapping[str, Any]], clinic: ClinicConfig | None = None
) -> dict[str, Expected | None]:
    """Lineage key -> what its Appointment must say, from webhook documents in Cal.com's chronological order."""
    clinic = clinic or load_config(DEMO_CLINIC)
    lineages: dict[str, _Lineage] = {}
    alias: dict[str, str] = {}  # uid -> lineage, as the sync's alias index
    no_shows: list[tuple[datetime, Mapping[str, Any]]] = []
    for document in history:
        trigger = str(document.get("triggerEvent"))
        if trigger not in _APPLIED:
            continue
        flat = "payload" not in document  # scheduled MEETING_* bodies are the bare booking row
        body: Mapping[str, Any] = document if flat else document["payload"]
        at = _utc(document["updatedAt"] if flat else document["createdAt"])
        if trigger == "BOOKING_NO_SHOW_UPDATED":
            no_shows.append((at, body))
            continue
        # A uid already placed stays where it is (a confirm of a rebooked uid carries no iCalUID);
        # else a rebooking goes where the booking it replaces is; else its own key.
        key = (
            alias.get(body["uid"])
            or alias.get(body.get("rescheduleUid") or "")
            or body.get("iCalUID")
            or f"{body['uid']}@Cal.com"
        )
        lineage = lineages.setdefault(key, _Lineage())
        _merge(lineage, trigger, at, body)
        for uid in lineage.bookings:
            alias.setdefault(uid, key)
    for at, body in no_shows:  # rule 5; a no-show for a uid nobody knows stays deferred
        if (key := alias.get(body["bookingUid"])) is None:
            continue
        marks, scope = lineages[key].no_show, body["bookingUid"]
        for attendee in body.get("attendees") or []:
            person = str(attendee["email"]).strip().lower()
            if (scope, person) not in marks or at >= marks[scope, person][0]:
                marks[scope, person] = (at, bool(attendee.get("noShow")))
    return {key: _expected(lineage, clinic) for key, lineage in lineages.items()}
