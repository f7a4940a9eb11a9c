"""Booking rules (pure): does a booking fit the clinic's rules before it reaches the EHR?

The rules are configured in the clinic mapping (`rules:`, `shared.clinic.rules`) and read only
PHI-free facts: the `AppointmentView` (times, event type, host, the keyed location, new vs follow-up),
the mapping, the Cal.com time of the booking version and, for telehealth licensure, the patient's state
as a two-letter code (taken from the booking's answers by the caller; it is never stored, logged or
put into a detail).

**When** (`judge`): a lineage is judged when the facts the rules read change while the Appointment is
bookable (`pending` or `booked`): its first booking, a reschedule, another host, location or event type,
or a new visit kind. A confirmation, a no-show or a redelivery changes none of them and is not judged
again. What a violation does depends on what caused the change:

* a **booking version** (the event that supplied the Appointment's current details: a creation,
  request, reschedule or seat change): `enforce` rules park it for review (reason `rule:<name>`), unless
  an operator accepted that rule on a retry; `warn` rules let it through and are reported;
* **anything else** (a routing form that says "new patient" after the booking was written): the
  Appointment is already in the EHR and an enforce rule cannot hold it back, so violations that this
  change introduced are reported as warnings. Telehealth licensure needs the booking's answers and is
  judged on booking versions only.

Details name rules, minutes, days, Cal.com user ids, event types and Location references: no PHI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.calcom.models import BookingEvent
from shared.clinic.mapping import ClinicConfig, EventTypeMapping, LocationMapping, PractitionerMapping
from shared.clinic.rules import RULE_NAMES, RuleMode
from shared.domain.decide import AppointmentView, details_of
from shared.domain.lineage_state import VisitKind
from shared.domain.people import mapped_location
from shared.errors import ReviewRequired

#: Appointment statuses a rule judges: a cancelled, fulfilled or no-show Appointment is history.
BOOKABLE = frozenset({"pending", "booked"})
MAX_DETAIL = 600

#: US states, DC and territories by name (lower case) → USPS code; an answer may be either.
US_STATES: dict[str, str] = {
    "alabama": "AL", "alaska": "AK", "arizona": "AZ", "arkansas": "AR", "california": "CA",
    "colorado": "CO", "connecticut": "CT", "delaware": "DE", "district of columbia": "DC",
    "florida": "FL", "georgia": "GA", "hawaii": "HI", "idaho": "ID", "illinois": "IL", "indiana": "IN",
    "iowa": "IA", "kansas": "KS", "kentucky": "KY", "louisiana": "LA", "maine": "ME", "maryland": "MD",
    "massachusetts": "MA", "michigan": "MI", "minnesota": "MN", "mississippi": "MS", "missouri": "MO",
    "montana": "MT", "nebraska": "NE", "nevada": "NV", "new hampshire": "NH", "new jersey": "NJ",
    "new mexico": "NM", "new york": "NY", "north carolina": "NC", "north dakota": "ND", "ohio": "OH",
    "oklahoma": "OK", "oregon": "OR", "pennsylvania": "PA", "rhode island": "RI", "south carolina": "SC",
    "south dakota": "SD", "tennessee": "TN", "texas": "TX", "utah": "UT", "vermont": "VT",
    "virginia": "VA", "washington": "WA", "west virginia": "WV", "wisconsin": "WI", "wyoming": "WY",
    "american samoa": "AS", "guam": "GU", "northern mariana islands": "MP", "puerto rico": "PR",
    "u.s. virgin islands": "VI", "us virgin islands": "VI", "virgin islands": "VI",
}  # fmt: skip


class NotAsked:
    """The patient's state is not known to this judgement (not a booking version): licensure is skipped."""

    def __repr__(self) -> str:
        return "NOT_ASKED"


NOT_ASKED = NotAsked()
PatientState = str | None | NotAsked


@dataclass(frozen=True, slots=True)
class Violation:
    """One rule a booking breaks: its name, its mode and a PHI-free detail."""

    rule: str
    mode: RuleMode
    detail: str


class RuleViolated(ReviewRequired):
    """A booking version breaks `enforce` rules: parked with reason `rule:<first rule>` (all in `rules`)."""

    def __init__(self, violations: tuple[Violation, ...]) -> None:
        detail = "; ".join(f"{v.rule}: {v.detail}" for v in violations)
        super().__init__(f"rule:{violations[0].rule}", detail[:MAX_DETAIL])
        self.rules = tuple(v.rule for v in violations)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the rules say about one change: `parked` stops it; `warned` and `accepted` are written."""

    parked: tuple[Violation, ...] = ()
    #: `warn` rules, and violations an enforce rule could not hold back (the Appointment was written).
    warned: tuple[Violation, ...] = ()
    #: `enforce` rules an operator accepted for this message (`calehr review retry --accept-rule`).
    accepted: tuple[Violation, ...] = ()

    @property
    def written(self) -> tuple[str, ...]:
        """Names of the violations written to the EHR anyway (each counts as a `RuleViolation`)."""
        return tuple(v.rule for v in (*self.warned, *self.accepted))

    @property
    def audit_reason(self) -> str:
        """For the audit record: `rule_warning:a,b;rule_accepted:c` (empty when nothing was flagged)."""
        parts = []
        if self.warned:
            parts.append("rule_warning:" + ",".join(v.rule for v in self.warned))
        if self.accepted:
            parts.append("rule_accepted:" + ",".join(v.rule for v in self.accepted))
        return ";".join(parts)

    def raise_for_review(self) -> None:
        """Raise `RuleViolated` when an enforce rule holds this change back."""
        if self.parked:
            raise RuleViolated(self.parked)


@dataclass(frozen=True, slots=True)
class RuleSubject:
    """The facts the rules read of one lineage's Appointment-to-be (PHI-free).

    Two subjects are equal when no rule could judge them differently; `booked_at` does not count
    (a confirmation or a later delivery of the same slot is not a new booking).
    """

    start: datetime
    end: datetime
    visit_kind: VisitKind | None
    event_type: EventTypeMapping
    host_user_id: int | None
    host_email: str | None
    host: PractitionerMapping | None
    telehealth: bool
    place: str | None
    booked_at: datetime = field(compare=False)

    @property
    def event_type_label(self) -> str:
        mapping = self.event_type
        return str(mapping.id) if mapping.id is not None else str(mapping.slug)

    @property
    def host_label(self) -> str:
        user_id = self.host_user_id if self.host_user_id is not None else (self.host and self.host.calcom_user_id)
        return f"Cal.com user {user_id}" if user_id is not None else "the host"


def booking_place(event_type: EventTypeMapping, location: LocationMapping | None) -> str | None:
    """The EHR Location of the visit: a mapped booking location wins over the event type's default."""
    if location is not None:
        return location.reference
    return None if event_type.telehealth else event_type.location_reference


def subject_of(view: AppointmentView | None, config: ClinicConfig, key: bytes) -> RuleSubject | None:
    """The rules' view of a bookable Appointment; None when there is none or its event type is unmapped."""
    if view is None or view.status not in BOOKABLE:
        return None
    details = view.details
    event_type = config.event_type(details.event_type_id, details.event_type_slug)
    if event_type is None:
        return None  # parked as `unmapped_event_type` by the sync
    location = mapped_location(config, details.location_key, key)
    return RuleSubject(
        start=details.start,
        end=details.end,
        visit_kind=view.visit_kind,
        event_type=event_type,
        host_user_id=details.host_user_id,
        host_email=details.host_email,
        host=config.practitioner(details.host_user_id, details.host_email),
        telehealth=location.telehealth if location is not None else event_type.telehealth,
        place=booking_place(event_type, location),
        booked_at=details.source_rank[1],
    )


def supplies_details(event: BookingEvent, view: AppointmentView | None) -> bool:
    """Whether `event` is the booking version the Appointment's current details come from."""
    if view is None or event.kind != "booking" or event.uid != view.head_uid:
        return False
    details = details_of(event)
    return details is not None and details.source_rank == view.details.source_rank


def state_code(answer: Any) -> str | None:
    """A booking answer naming a US state (code or name, any case) → its two-letter code, else None.

    Select questions may arrive as a string, a `{value|label}` object or a list; the first string counts.
    """
    if isinstance(answer, dict):
        answer = answer.get("value", answer.get("label"))
    if isinstance(answer, list):
        answer = next((item for item in answer if isinstance(item, str)), None)
    if not isinstance(answer, str):
        return None
    text = " ".join(answer.lower().split())
    if len(text) == 2 and text.isalpha():
        return text.upper()
    return US_STATES.get(text)


def patient_state(event: BookingEvent, config: ClinicConfig) -> str | None:
    """The patient's state from the booking question `rules.telehealth_licensure.state_field` (a code)."""
    rule = config.rules.telehealth_licensure
    return state_code(event.responses.get(rule.state_field)) if rule is not None else None


# -- the rules ------------------------------------------------------------------------------------
def _minutes(subject: RuleSubject) -> int:
    return int((subject.end - subject.start).total_seconds() // 60)


def _min_duration(subject: RuleSubject, config: ClinicConfig, state: PatientState) -> str | None:
    rule = config.rules.min_duration
    assert rule is not None
    follow_up = subject.visit_kind == "follow_up"  # nothing tells → new, as the appointmentType says
    required = rule.follow_up if follow_up else rule.new
    minutes = _minutes(subject)
    if required is None or minutes >= required:
        return None
    kind = "follow-up" if follow_up else "new-patient"
    return f"a {kind} visit of {minutes} min (event type {subject.event_type_label}); at least {required} min required"


def _telehealth_licensure(subject: RuleSubject, config: ClinicConfig, state: PatientState) -> str | None:
    rule = config.rules.telehealth_licensure
    assert rule is not None
    if not subject.telehealth or isinstance(state, NotAsked) or subject.host is None:
        return None  # in person; not a booking version; an unmapped host is parked as `unmapped_host`
    if state is None:
        return f"no usable answer to '{rule.state_field}' (the patient's state) on a telehealth booking"
    licensed = {code.upper() for code in subject.host.licensed_states or []}
    if state in licensed:
        return None
    return f"{subject.host_label} is not licensed in the patient's state for telehealth"


def _hosts_allowed(subject: RuleSubject) -> bool:
    allowed = subject.event_type.practitioners or []
    ids = {subject.host_user_id, subject.host.calcom_user_id if subject.host else None} - {None}
    emails = {e.strip().lower() for e in (subject.host_email, subject.host.email if subject.host else None) if e}
    return any((entry in ids) if isinstance(entry, int) else entry.strip().lower() in emails for entry in allowed)


def _event_type_practitioners(subject: RuleSubject, config: ClinicConfig, state: PatientState) -> str | None:
    if subject.event_type.practitioners is None or _hosts_allowed(subject):
        return None
    return f"{subject.host_label} is not a practitioner of event type {subject.event_type_label}"


def _event_type_locations(subject: RuleSubject, config: ClinicConfig, state: PatientState) -> str | None:
    allowed = subject.event_type.locations
    if allowed is None or subject.telehealth or subject.place in allowed:
        return None
    where = subject.place or "no Location"
    return f"an in-person visit at {where}, not a location of event type {subject.event_type_label}"


def _in_person_location(subject: RuleSubject, config: ClinicConfig, state: PatientState) -> str | None:
    if subject.telehealth or subject.place is not None:
        return None
    return (
        f"an in-person visit without a Location (event type {subject.event_type_label} has no location_reference "
        "and the booking's location is not in `locations`)"
    )


def _lead_time(subject: RuleSubject, config: ClinicConfig, state: PatientState) -> str | None:
    rule = config.rules.lead_time
    assert rule is not None
    notice = subject.start - subject.booked_at
    minutes = int(notice.total_seconds() // 60)
    if rule.min_notice_minutes is not None and minutes < rule.min_notice_minutes:
        return f"booked {minutes} min before the start; at least {rule.min_notice_minutes} min notice required"
    if rule.max_days_ahead is not None and notice.total_seconds() > rule.max_days_ahead * 86400:
        return f"booked {notice.days} days ahead; at most {rule.max_days_ahead} days ahead allowed"
    return None


_CHECKS = {
    "min_duration": _min_duration,
    "telehealth_licensure": _telehealth_licensure,
    "event_type_practitioners": _event_type_practitioners,
    "event_type_locations": _event_type_locations,
    "in_person_location": _in_person_location,
    "lead_time": _lead_time,
}
assert tuple(_CHECKS) == RULE_NAMES


def violations(subject: RuleSubject, config: ClinicConfig, state: PatientState = NOT_ASKED) -> tuple[Violation, ...]:
    """Every configured rule `subject` breaks, in `RULE_NAMES` order."""
    found = []
    for name, rule in config.rules.active().items():
        detail = _CHECKS[name](subject, config, state)
        if detail is not None:
            found.append(Violation(rule=name, mode=rule.mode, detail=detail))
    return tuple(found)


def judge(
    before: AppointmentView | None,
    after: AppointmentView | None,
    config: ClinicConfig,
    key: bytes,
    *,
    version: bool,
    state: PatientState = NOT_ASKED,
    accepted: frozenset[str] = frozenset(),
) -> Verdict:
    """The rules' verdict on the change from `before` (committed) to `after` (to be written).

    `version`: the event being applied is the booking version that supplied `after`'s details
    (`supplies_details`); `state`: the patient's state code from its answers (booking versions only);
    `accepted`: enforce rules an operator accepted for this message.
    """
    if not config.rules.active():
        return Verdict()
    current = subject_of(after, config, key)
    if current is None:
        return Verdict()
    previous = subject_of(before, config, key)
    if previous == current:
        return Verdict()  # nothing a rule reads has changed: judged before
    if not version:
        known = {v.rule for v in violations(previous, config)} if previous is not None else set()
        return Verdict(warned=tuple(v for v in violations(current, config) if v.rule not in known))
    found = violations(current, config, state)
    return Verdict(
        parked=tuple(v for v in found if v.mode == "enforce" and v.rule not in accepted),
        warned=tuple(v for v in found if v.mode == "warn"),
        accepted=tuple(v for v in found if v.mode == "enforce" and v.rule in accepted),
    )
