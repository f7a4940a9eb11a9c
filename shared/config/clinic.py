"""The clinic mapping: Cal.com event types, hosts, routing forms → FHIR codes, Practitioners, EHRs.

Parsed from a YAML/JSON file (locally), an SSM parameter or an AppConfig profile (in AWS; re-read by
`shared.config.source.ClinicConfigSource`), validated with pydantic; an invalid document is refused
whole with every problem and its path, never half applied.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

APPOINTMENT_TYPES = ("CHECKUP", "EMERGENCY", "FOLLOWUP", "ROUTINE", "WALKIN")
AppointmentTypeCode = Literal["CHECKUP", "EMERGENCY", "FOLLOWUP", "ROUTINE", "WALKIN"]
#: An event type whose appointmentType follows the visit kind (new vs follow-up), see `VisitKinds`.
BY_VISIT_KIND = "by-visit-kind"
MAX_CONFIG_BYTES = 256 * 1024
_SLUG = r"^[A-Za-z0-9_\-.]{1,64}$"
_ROUTE = r"^[a-z][a-z0-9-]{0,31}$"


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

    @model_validator(mode="after")
    def _complete(self) -> PractitionerMapping:
        if self.calcom_user_id is None and not self.email:
            raise ValueError("a practitioner needs 'calcom_user_id' or 'email' to match the Cal.com host")
        if (self.reference is None) == (self.npi is None):
            raise ValueError("a practitioner needs exactly one of 'reference' or 'npi'")
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

    @model_validator(mode="after")
    def _mrn_needs_system(self) -> ClinicConfig:
        if self.patient_fields.mrn and not self.patient_matching.mrn_system:
            raise ValueError("patient_fields.mrn is set: patient_matching.mrn_system is required")
        return self

    @model_validator(mode="after")
    def _forms_consistent(self) -> ClinicConfig:
        problems: list[str] = []
        ids = [form.form_id for form in self.routing_forms]
        problems += [f"routing form {i} is listed twice" for i in sorted({i for i in ids if ids.count(i) > 1})]
        hosts = {p.calcom_user_id for p in self.practitioners if p.calcom_user_id is not None}
        for form in self.routing_forms:
            if form.preferred_provider:
                unknown = sorted(set(form.preferred_provider.options.values()) - hosts)
                if unknown:
                    problems.append(
                        f"routing form {form.form_id}: preferred_provider names Cal.com users {unknown} "
                        "that are not in practitioners"
                    )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def location(self, location_key: str | None, key: bytes) -> LocationMapping | None:
        """The mapping whose `calcom` value has this keyed hash (see shared.domain.people.location_key)."""
        if not location_key:
            return None
        from shared.domain.people import location_key as keyed  # noqa: PLC0415 - config stays import-light

        return next((m for m in self.locations if keyed(m.calcom, key) == location_key), None)

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


def parse_config(text: str, *, origin: str = "config") -> ClinicConfig:
    """Validate a YAML or JSON document; raise `ConfigError` listing every problem with its path."""
    if len(text.encode("utf-8")) > MAX_CONFIG_BYTES:
        raise ConfigError([f"{origin}: larger than {MAX_CONFIG_BYTES} bytes"])
    try:
        document: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError([f"{origin}: not valid YAML/JSON{where}"]) from None
    if not isinstance(document, dict):
        raise ConfigError([f"{origin}: the document must be a mapping"])
    try:
        return ClinicConfig.model_validate(document)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            path = ".".join(str(part) for part in error["loc"]) or "$"
            problems.append(f"{path}: {error['msg']}")
        raise ConfigError(problems) from None


def load_config(source: str) -> ClinicConfig:
    """`file:<path>` or `ssm:<parameter name>` → a validated `ClinicConfig`."""
    scheme, _, location = source.partition(":")
    if scheme == "file":
        path = Path(location)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError([f"{location}: cannot be read ({exc.strerror})"]) from None
        return parse_config(text, origin=location)
    if scheme == "ssm":
        from aws_lambda_powertools.utilities import parameters  # noqa: PLC0415 - only needed in AWS

        return parse_config(str(parameters.get_parameter(location, max_age=300)), origin=location)
    raise ConfigError([f"{source}: source must start with 'file:' or 'ssm:'"])


@cache
def cached_config(source: str) -> ClinicConfig:
    return load_config(source)


def dump_example() -> str:
    return json.dumps(ClinicConfig.model_json_schema(), indent=2)
