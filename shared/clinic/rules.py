"""The booking rules of the clinic mapping (`rules:`): which checks run before a booking reaches the EHR.

Each rule is off unless its section is present; each says what a violation does (`mode`):

* `enforce`: the booking version is parked for review with reason `rule:<name>` (nothing is written);
* `warn`: it is written, and its audit record and the `RuleViolation` metric name the rule.

The data some rules read lives next to what it describes: `event_types[].practitioners` and
`event_types[].locations` (who and where an event type may be booked), `practitioners[].licensed_states`
(where a practitioner may see patients by telehealth). The evaluation is `shared.domain.booking_rules`; the
guide is docs/configure-clinic.md ("Booking rules").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

RuleMode = Literal["enforce", "warn"]
_SLUG = r"^[A-Za-z0-9_\-.]{1,64}$"
#: A two-letter state or territory code (USPS), compared case-insensitively.
STATE_CODE = r"^[A-Za-z]{2}$"

#: Every rule, in the order they are evaluated and reported.
RULE_NAMES = (
    "min_duration",
    "telehealth_licensure",
    "event_type_practitioners",
    "event_type_locations",
    "in_person_location",
    "lead_time",
)


class _Rules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rule(_Rules):
    """A rule without options of its own."""

    #: `enforce`: park the booking for review; `warn`: write it, audit and count the violation.
    mode: RuleMode


class MinDurationRule(Rule):
    """The shortest visit, in minutes, by visit kind (new vs follow-up, as `visit_kinds` decides).

    A booking whose visit kind nothing tells is treated as new (as its appointmentType is).
    """

    new: int | None = Field(default=None, ge=1, le=24 * 60)
    follow_up: int | None = Field(default=None, ge=1, le=24 * 60)

    @model_validator(mode="after")
    def _a_bound(self) -> MinDurationRule:
        if self.new is None and self.follow_up is None:
            raise ValueError("give the minimum minutes for 'new', 'follow_up' or both")
        return self


class TelehealthLicensureRule(Rule):
    """A telehealth visit needs a practitioner licensed in the patient's state.

    The state is the answer to the booking question `state_field` (a two-letter code or a state's
    name); it is compared with the host's `licensed_states` and never stored, logged or audited.
    """

    state_field: str = Field(pattern=_SLUG)


class LeadTimeRule(Rule):
    """How soon and how far ahead a visit may be booked, from the Cal.com time of the booking version
    (its creation, request or reschedule) to the visit's start."""

    min_notice_minutes: int | None = Field(default=None, ge=0, le=365 * 24 * 60)
    max_days_ahead: int | None = Field(default=None, ge=1, le=3650)

    @model_validator(mode="after")
    def _a_bound(self) -> LeadTimeRule:
        if self.min_notice_minutes is None and self.max_days_ahead is None:
            raise ValueError("give 'min_notice_minutes', 'max_days_ahead' or both")
        return self


class BookingRules(_Rules):
    """The clinic's booking rules; an absent rule is off."""

    #: New patients need longer visits (e.g. `new: 40`).
    min_duration: MinDurationRule | None = None
    #: Telehealth: the host must be licensed where the patient is (`practitioners[].licensed_states`).
    telehealth_licensure: TelehealthLicensureRule | None = None
    #: The host must be one of the event type's `practitioners`.
    event_type_practitioners: Rule | None = None
    #: An in-person visit must be at one of the event type's `locations`.
    event_type_locations: Rule | None = None
    #: An in-person visit must have a Location (the event type's, or a mapped booking location).
    in_person_location: Rule | None = None
    #: Minimum notice and booking horizon.
    lead_time: LeadTimeRule | None = None

    def active(self) -> dict[str, Rule]:
        """The configured rules by name, in evaluation order."""
        return {name: rule for name in RULE_NAMES if (rule := getattr(self, name)) is not None}


def _items(document: Mapping[str, Any], section: str) -> list[tuple[int, Mapping[str, Any]]]:
    items = document.get(section)
    if not isinstance(items, list):
        return []
    return [(index, item) for index, item in enumerate(items) if isinstance(item, Mapping)]


def rule_problems(document: Mapping[str, Any]) -> list[str]:
    """Checks between `rules` and the data the rules read, on the raw document (with paths).

    A rule's data without the rule (it would silently do nothing), a rule without its data, and
    references to practitioners or Locations that the mapping does not have.
    """
    section = document.get("rules")
    # A rule set to null is off (a dumped model lists every rule, the absent ones as None).
    rules = {k: v for k, v in section.items() if v is not None} if isinstance(section, Mapping) else {}
    problems: list[str] = []
    event_types = _items(document, "event_types")
    practitioners = _items(document, "practitioners")
    host_ids = {p.get("calcom_user_id") for _, p in practitioners if isinstance(p.get("calcom_user_id"), int)}
    host_emails = {str(p["email"]).strip().lower() for _, p in practitioners if isinstance(p.get("email"), str)}

    listing_hosts = [(i, e) for i, e in event_types if e.get("practitioners") is not None]
    if listing_hosts and "event_type_practitioners" not in rules:
        problems += [
            f"event_types.{i}.practitioners: listed, but rules.event_type_practitioners is not configured "
            "(add it with mode enforce or warn, or remove the list)"
            for i, _ in listing_hosts
        ]
    if "event_type_practitioners" in rules and not listing_hosts:
        problems.append("rules.event_type_practitioners: no event type lists its practitioners")
    for index, entry in listing_hosts:
        hosts = entry["practitioners"]
        for position, host in enumerate(hosts if isinstance(hosts, list) else []):
            known = host in host_ids if isinstance(host, int) else str(host).strip().lower() in host_emails
            if not known:
                problems.append(
                    f"event_types.{index}.practitioners.{position}: {host!r} is not a practitioner of this "
                    "mapping (use its calcom_user_id or email)"
                )

    listing_places = [(i, e) for i, e in event_types if e.get("locations") is not None]
    if listing_places and "event_type_locations" not in rules:
        problems += [
            f"event_types.{i}.locations: listed, but rules.event_type_locations is not configured "
            "(add it with mode enforce or warn, or remove the list)"
            for i, _ in listing_places
        ]
    if "event_type_locations" in rules and not listing_places:
        problems.append("rules.event_type_locations: no event type lists its locations")
    for index, entry in listing_places:
        places = entry["locations"] if isinstance(entry["locations"], list) else []
        if entry.get("telehealth") is True and places:
            problems.append(f"event_types.{index}.locations: a telehealth event type has no in-person Location")
        own = entry.get("location_reference")
        if isinstance(own, str) and places and own not in places:
            problems.append(
                f"event_types.{index}.locations: does not include the event type's own location_reference {own!r}"
            )

    licensed = [(i, p) for i, p in practitioners if p.get("licensed_states") is not None]
    if licensed and "telehealth_licensure" not in rules:
        problems += [
            f"practitioners.{i}.licensed_states: listed, but rules.telehealth_licensure is not configured "
            "(add it with mode enforce or warn, or remove the list)"
            for i, _ in licensed
        ]
    if "telehealth_licensure" in rules:
        problems += [
            f"practitioners.{i}.licensed_states: required by rules.telehealth_licensure "
            "(use [] for a practitioner who sees no patients by telehealth)"
            for i, p in practitioners
            if p.get("licensed_states") is None
        ]
    return problems
