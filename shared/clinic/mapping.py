"""The clinic mapping: Cal.com event types, hosts, routing forms → FHIR codes, Practitioners, EHRs.

Parsed from a YAML/JSON file (locally), an SSM parameter or an AppConfig profile (in AWS; re-read by
`shared.clinic.source.ClinicConfigSource`), validated with pydantic; an invalid document is refused
whole with every problem and its path, never half applied.
"""

from __future__ import annotations

from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.clinic.checks import semantic_problems
from shared.clinic.rules import STATE_CODE, BookingRules

APPOINTMENT_TYPES = ("CHECKUP", "EMERGENCY", "FOLLOWUP", "ROUTINE", "WALKIN")
AppointmentTypeCode = Literal["CHECKUP", "EMERGENCY", "FOLLOWUP", "ROUTINE", "WALKIN"]
#: An event type whose appointmentType follows the visit kind (new vs follow-up), see `VisitKinds`.
BY_VISIT_KIND = "by-visit-kind"
_SLUG = r"^[A-Za-z0-9_\-.]{1,64}$"
_ROUTE = r"^[a-z][a-z0-9-]{0,31}$"
#: An HL7 v2 code or namespace (HD-1, IS/ID values): no delimiters, no spaces at the ends.
_V2_CODE = r"^[A-Za-z0-9_\-.:]{1,20}$"
_LOCATION_REF = r"^Location/[A-Za-z0-9\-.]{1,64}$"


class ConfigError(Exception):
    """The clinic configuration is invalid. `problems` lists `path: message` strings."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid clinic configuration:\n" + "\n".join(f"  - {p}" for p in problems))
        self.problems = problems


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Coding(_Config):
    system: str = Field(pattern=r"^(https?|urn):")
    code: str = Field(min_length=1)
    display: str | None = None


class Hl7Code(_Config):
    """A coded value for an HL7 v2 CE/CWE field: identifier, text, name of coding system (default local)."""

    code: str = Field(pattern=_V2_CODE)
    text: str | None = Field(default=None, max_length=199)
    system: str = Field(default="L", pattern=_V2_CODE)


class EventTypeMapping(_Config):
    """One Cal.com event type, matched by numeric id or by slug."""

    id: int | None = None
    slug: str | None = None
    #: An HL7 v2-0276 code, or `by-visit-kind`: new vs follow-up decides (see `VisitKinds`).
    appointment_type: Literal["CHECKUP", "EMERGENCY", "FOLLOWUP", "ROUTINE", "WALKIN", "by-visit-kind"] = "ROUTINE"
    service_type: Coding | None = None
    specialty: Coding | None = None
    telehealth: bool = False
    #: The EHR Location of an in-person visit (added as a participant); none for telehealth.
    location_reference: str | None = Field(default=None, pattern=r"^Location/[A-Za-z0-9\-.]{1,64}$")
    #: Which EHR endpoint holds these appointments (a deployment route name; `default` = the main EHR).
    ehr: str = Field(default="default", pattern=_ROUTE)
    #: HL7 v2 only: the interface's visit type code for AIS-3 (default: `service_type`, else the slug).
    hl7_service: Hl7Code | None = None
    #: Rule `event_type_practitioners`: the hosts this type may be booked with (Cal.com user ids or e-mails).
    practitioners: list[int | str] | None = Field(default=None, max_length=500)
    #: Rule `event_type_locations`: the EHR Locations an in-person visit of this type may be at.
    locations: list[Annotated[str, Field(pattern=_LOCATION_REF)]] | None = Field(default=None, max_length=500)
    #: A booking whose slot overlaps an appointment made in the EHR (same practitioner, or same room in
    #: person) that the bridge did not write: `review` parks it (`ehr_conflict`), `write_and_flag` writes
    #: it and flags it (audit, `EhrConflict` metric), `ignore` does not search (EHRs that refuse
    #: Appointment searches). HL7 v2 routes cannot search and are never checked.
    on_conflict: Literal["review", "write_and_flag", "ignore"] = "review"

    @model_validator(mode="after")
    def _needs_a_key(self) -> EventTypeMapping:
        if self.id is None and not self.slug:
            raise ValueError("an event type needs 'id' or 'slug'")
        return self


class LocationMapping(_Config):
    """A Cal.com location value (what the booking's `location` says) → an EHR Location or telehealth.

    `calcom` is matched case- and whitespace-insensitively against the booking's location: e.g.
    `integrations:daily` (Cal Video), `integrations:zoom`, or an in-person address the clinic offers.
    Only a keyed hash of the booking's value is kept, since an attendee-chosen address is PHI.
    """

    calcom: str = Field(min_length=1, max_length=500)
    reference: str | None = Field(default=None, pattern=r"^Location/[A-Za-z0-9\-.]{1,64}$")
    telehealth: bool = False

    @model_validator(mode="after")
    def _one_meaning(self) -> LocationMapping:
        if (self.reference is None) == (not self.telehealth):
            raise ValueError("a location needs exactly one of 'reference' or 'telehealth: true'")
        return self


class PractitionerMapping(_Config):
    """A Cal.com host → an EHR Practitioner, by literal reference or by NPI (resolved by search)."""

    calcom_user_id: int | None = None
    email: str | None = None
    reference: str | None = Field(default=None, pattern=r"^Practitioner/[A-Za-z0-9\-.]{1,64}$")
    npi: str | None = Field(default=None, pattern=r"^\d{10}$")
    #: HL7 v2 only: the provider's id in the interface engine (AIP-3/AIG-3; preferred over the NPI there).
    hl7_id: str | None = Field(default=None, pattern=_V2_CODE)
    #: Rule `telehealth_licensure`: two-letter codes of the states this practitioner is licensed in.
    licensed_states: list[Annotated[str, Field(pattern=STATE_CODE)]] | None = Field(default=None, max_length=60)

    @model_validator(mode="after")
    def _complete(self) -> PractitionerMapping:
        if self.calcom_user_id is None and not self.email:
            raise ValueError("a practitioner needs 'calcom_user_id' or 'email' to match the Cal.com host")
        if self.reference is not None and self.npi is not None:
            raise ValueError("a practitioner needs exactly one of 'reference' or 'npi'")
        if self.reference is None and self.npi is None and self.hl7_id is None:
            # hl7_id alone serves HL7 v2 routes only; a FHIR route parks such a host for review.
            raise ValueError("a practitioner needs exactly one of 'reference' or 'npi' (or 'hl7_id' for HL7 v2)")
        return self


class PatientFields(_Config):
    """Booking-question slugs that carry patient data (matched on the `responses` key, not the label)."""

    birth_date: str | None = None
    phone: str | None = None
    mrn: str | None = None
    #: Administrative sex for a newly created Patient (answers male/female/other, else `unknown`).
    sex: str | None = None


class FreeTextFields(_Config):
    """Booking-question slugs whose free text may reach the EHR. Default: none ever does.

    Free text is written only to the EHR (never to state, audit, logs or metrics), from the event that
    supplied the current booking's details.
    """

    #: Answers written to `Appointment.comment` (joined, in this order).
    comment: list[str] = Field(default_factory=list, max_length=10)
    #: Answers written as `Appointment.reasonCode[].text`.
    reason: list[str] = Field(default_factory=list, max_length=10)


class PatientMatching(_Config):
    """How a booking's attendee becomes an EHR Patient. The bridge never guesses between candidates."""

    #: Identifier system of the clinic's MRN, searched exactly when the `mrn` question is answered.
    mrn_system: str | None = Field(default=None, pattern=r"^(https?|urn):")
    #: What to do when nobody matches: create a minimal Patient, or park the booking for review.
    on_no_match: Literal["create", "review"] = "create"


class VisitKinds(_Config):
    """appointmentType of `by-visit-kind` event types. Evidence, strongest first: the joined routing
    form's new/follow-up answer, then patient matching (every patient matched an existing Patient →
    follow-up; one was created → new); with neither, `new`."""

    new: AppointmentTypeCode = "ROUTINE"
    follow_up: AppointmentTypeCode = "FOLLOWUP"


class FormVisitKind(_Config):
    """Which answers of a select question mean a first visit or a follow-up (matched on the option label)."""

    field: str = Field(pattern=_SLUG)
    new: list[str] = Field(default_factory=list)
    follow_up: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _disjoint(self) -> FormVisitKind:
        both = {o.strip().lower() for o in self.new} & {o.strip().lower() for o in self.follow_up}
        if both:
            raise ValueError(f"options listed as both new and follow_up: {sorted(both)}")
        if not self.new and not self.follow_up:
            raise ValueError("list at least one option under 'new' or 'follow_up'")
        return self


class FormReason(_Config):
    """A select question whose options map to a coded reason for visit (`Appointment.reasonCode`)."""

    field: str = Field(pattern=_SLUG)
    options: dict[str, Coding] = Field(min_length=1)


class FormPreferredProvider(_Config):
    """A select question naming a provider: option label → Cal.com user id of a mapped practitioner."""

    field: str = Field(pattern=_SLUG)
    options: dict[str, int] = Field(min_length=1)


class RoutingFormMapping(_Config):
    """A Cal.com routing form whose answers join the booking they led to.

    Join key: the keyed hash of the e-mail answered in `email_field` equals the booker's, and the
    booking was made within `join_window_minutes` after the form (Cal.com sends no booking id with a
    form submission). Only configured select options are kept; free-text answers never leave the form.
    """

    form_id: str = Field(pattern=r"^[A-Za-z0-9\-]{1,64}$")
    email_field: str = Field(default="email", pattern=_SLUG)
    join_window_minutes: int = Field(default=60, ge=1, le=7 * 24 * 60)
    visit_kind: FormVisitKind | None = None
    reason: FormReason | None = None
    preferred_provider: FormPreferredProvider | None = None


PidField = Literal["name", "birth_date", "sex", "phone", "email", "mrn"]


def _default_pid_fields() -> list[PidField]:
    """What most engines match patients on; phone, e-mail and MRN only when the clinic adds them."""
    return ["name", "birth_date", "sex"]


class Hl7Location(_Config):
    """How an EHR Location appears in AIL-3 / PV1-3 (PL): point of care, facility."""

    point_of_care: str = Field(pattern=_V2_CODE)
    facility: str | None = Field(default=None, pattern=_V2_CODE)


class Hl7AckPolicy(_Config):
    """What an AE (application error) ACK means, by the error codes in its ERR/MSA segments.

    AA (and a CA commit accept) is applied; AR is always review; no ACK or a timeout is retried.
    """

    #: AE with one of these codes (HL7 table 0357, or the engine's own) is retried with backoff.
    retry_codes: list[str] = Field(default_factory=lambda: ["206", "207"], max_length=50)
    #: AE with no code or codes not listed above: `review` (default) or `retry`.
    otherwise: Literal["review", "retry"] = "review"


class Hl7v2Options(_Config):
    """The `hl7v2` EHR profile: how lineages are sent as SIU messages to an interface engine.

    Only EHR routes whose profile is `hl7v2` (a deployment setting) read this; FHIR routes ignore it.
    """

    version: Literal["2.5.1", "2.3.1"] = "2.5.1"
    sending_application: str = Field(default="CAL_EHR_BRIDGE", pattern=_V2_CODE)
    sending_facility: str = Field(default="CALCOM", pattern=_V2_CODE)
    receiving_application: str = Field(default="EHR", pattern=_V2_CODE)
    receiving_facility: str = Field(default="CLINIC", pattern=_V2_CODE)
    #: MSH-11: P production, T training, D debugging.
    processing_id: Literal["P", "T", "D"] = "P"
    #: Namespace (EI-2) of the placer/filler appointment id (SCH-1/SCH-2).
    appointment_namespace: str = Field(default="CALCOM", pattern=_V2_CODE)
    #: Assigning authority of the bridge's pseudonymous patient id in PID-3 (always sent).
    patient_id_authority: str = Field(default="CALCOM", pattern=_V2_CODE)
    #: Assigning authority of the MRN in PID-3 (type MR), when `mrn` is among `pid_fields`.
    mrn_authority: str = Field(default="MRN", pattern=_V2_CODE)
    #: Minimum necessary: which demographics PID carries (from the webhook body being processed).
    pid_fields: list[PidField] = Field(default_factory=_default_pid_fields)
    #: Where the provider goes: AIP (personnel resource, default) or AIG (general resource).
    provider_segment: Literal["AIP", "AIG"] = "AIP"
    #: Send a PV1 (patient class O, attending = the provider) in each patient group.
    pv1: bool = True
    #: A booking the host rejected (never confirmed): S15 cancel (default) or S17 deletion.
    rejected_as: Literal["S15", "S17"] = "S15"
    #: Times are rendered in this zone with its UTC offset (IANA name).
    timezone: str = "UTC"
    #: SCH-16/SCH-20 (contact / entered by, required by the standard): the bridge itself.
    contact_name: str = Field(default="Cal EHR Bridge", max_length=60, pattern=r"^[A-Za-z0-9 .\-]+$")
    #: EHR Location reference → PL; unmapped references send their id as the point of care.
    locations: dict[str, Hl7Location] = Field(default_factory=dict)
    ack: Hl7AckPolicy = Hl7AckPolicy()

    @model_validator(mode="after")
    def _known_zone(self) -> Hl7v2Options:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone {self.timezone!r} is not an IANA time zone") from None
        unknown = sorted(ref for ref in self.locations if not ref.startswith("Location/"))
        if unknown:
            raise ValueError(f"locations keys must be Location references, got {unknown}")
        return self


class ClinicConfig(_Config):
    version: Literal[1] = 1
    #: The clinic's own label for this revision of the mapping (e.g. a date or a git sha): it is written
    #: into every audit record, so each change can be traced to the mapping that produced it.
    revision: str = Field(default="", max_length=64, pattern=r"^[A-Za-z0-9_\-.:+]*$")
    event_types: list[EventTypeMapping] = Field(min_length=1)
    practitioners: list[PractitionerMapping] = Field(min_length=1)
    #: Cal.com location values → Location / telehealth; overrides the event type's location when matched.
    locations: list[LocationMapping] = Field(default_factory=list)
    patient_fields: PatientFields = PatientFields()
    patient_matching: PatientMatching = PatientMatching()
    #: Unmapped event types are parked for review unless a default is configured.
    default_event_type: EventTypeMapping | None = None
    visit_kinds: VisitKinds = VisitKinds()
    routing_forms: list[RoutingFormMapping] = Field(default_factory=list)
    free_text: FreeTextFields = FreeTextFields()
    #: Write a FHIR Provenance (target: the Appointment version) for every change the bridge makes.
    fhir_provenance: bool = False
    #: Options of EHR routes that use the `hl7v2` profile (SIU over MLLP).
    hl7v2: Hl7v2Options = Hl7v2Options()
    #: Checks a booking must pass before it is written (`shared.clinic.rules`); none by default.
    rules: BookingRules = BookingRules()

    @model_validator(mode="after")
    def _consistent(self) -> ClinicConfig:
        # The same checks `parse_config` reports with their paths; here for mappings built in code.
        problems = semantic_problems(self.model_dump(mode="json"))
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def routing_form(self, form_id: str) -> RoutingFormMapping | None:
        return next((form for form in self.routing_forms if form.form_id == form_id), None)

    def event_type(self, event_type_id: int | None, slug: str | None) -> EventTypeMapping | None:
        for mapping in self.event_types:
            if mapping.id is not None and mapping.id == event_type_id:
                return mapping
        for mapping in self.event_types:
            if mapping.slug and mapping.slug == slug:
                return mapping
        return self.default_event_type

    def practitioner(self, user_id: int | None, email: str | None) -> PractitionerMapping | None:
        for mapping in self.practitioners:
            if mapping.calcom_user_id is not None and mapping.calcom_user_id == user_id:
                return mapping
        wanted = (email or "").strip().lower()
        for mapping in self.practitioners:
            if wanted and mapping.email and mapping.email.strip().lower() == wanted:
                return mapping
        return None
