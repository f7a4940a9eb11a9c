"""SIU messages (ER7 text) from the PHI-free projection of a lineage plus in-memory demographics. Pure.

Structure (SIU_S12, shared by S12/S13/S14/S15/S17/S26):

    MSH  SCH  [TQ1 (2.5+)]  [NTE]  {PID [PV1]}  RGS  AIS  [AIG|AIP]  [AIL]

* SCH-1/SCH-2: the placer appointment id (the lineage, see `placer_id`), the same in every message of
  the lineage; SCH-7 the v2-0276 appointment reason, SCH-11 (and TQ1 on 2.5.1) the times, SCH-25 the
  filler status (table 0278).
* PID per present patient: PID-3 always carries the bridge's pseudonymous person id; name, birth date,
  sex, phone, e-mail and MRN only when the clinic mapping allows them *and* the webhook body being
  processed carries them (see `PatientDemographics`). A patient the body does not name gets the
  pseudonymous id and an unspecified name (XPN-7 `U`): receivers keep what they have.
* AIS-3 the visit type, AIP-3 (or AIG-3) the provider by local id or NPI, AIL-3 the location.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

from shared.calcom.lineage import lineage_hash
from shared.clinic.mapping import Hl7v2Options
from shared.ehr.hl7v2.escape import ENCODING_CHARACTERS, REPETITION, components, escape, segment

SiuEvent = Literal["S12", "S13", "S14", "S15", "S17", "S26"]
SEGMENT_SEPARATOR = "\r"

EVENT_NAMES: dict[str, str] = {
    "S12": "Notification of new appointment booking",
    "S13": "Notification of appointment rescheduling",
    "S14": "Notification of appointment modification",
    "S15": "Notification of appointment cancellation",
    "S17": "Notification of appointment deletion",
    "S26": "Notification that patient did not show up for scheduled appointment",
}
#: Lineage status → SCH-25 filler status (HL7 table 0278).
FILLER_STATUS = {
    "pending": "Pending",
    "booked": "Booked",
    "fulfilled": "Complete",
    "cancelled": "Cancelled",
    "noshow": "Noshow",
}
_CANCEL_REASONS = {
    "cancelled": ("CANCELLED", "Cancelled"),
    "rejected": ("REJECTED", "Rejected by the provider"),
    "reschedule_requested": ("RESCHEDULE", "Provider asked the patient to reschedule"),
}
_SEX = {"male": "M", "female": "F", "other": "O", "unknown": "U"}
#: EI-1 / CX-1 are ST of at most 199 characters in 2.5.1 (the placer id is a foreign iCalUID at worst).
MAX_ID_LENGTH = 199


@dataclass(frozen=True, slots=True)
class Code:
    """A CE/CWE value: identifier, text, name of coding system."""

    code: str
    text: str | None = None
    system: str = "L"

    def er7(self) -> str:
        return components(self.code, self.text, self.system)


@dataclass(frozen=True, slots=True)
class Provider:
    """The practitioner as the interface knows it: local id or NPI."""

    id: str
    kind: Literal["local", "npi"]

    def xcn(self) -> str:
        # XCN-1 id, XCN-9 assigning authority, XCN-13 identifier type.
        authority = "NPI" if self.kind == "npi" else ""
        return components(self.id, "", "", "", "", "", "", "", authority, "", "", "", "NPI" if authority else "")


@dataclass(frozen=True, slots=True)
class Place:
    point_of_care: str
    facility: str | None = None

    def pl(self) -> str:
        # PL-1 point of care, PL-4 facility (HD-1).
        return components(self.point_of_care, "", "", self.facility)


@dataclass(frozen=True, slots=True)
class SiuProjection:
    """What the interface engine should hold for a lineage, without PHI (people are keyed hashes).

    Its digest is stored in the lineage state once acknowledged; which event is due is decided by
    comparing projections (`shared.ehr.hl7v2.plan`).
    """

    placer_id: str
    booking_uid: str
    status: str
    cancel_kind: str | None
    start: datetime
    end: datetime
    appointment_reason: str
    service: Code
    provider: Provider
    location: Place | None
    #: Person keys of the present patients, sorted.
    patients: tuple[str, ...]
    reason: Code | None = None

    @property
    def minutes(self) -> int:
        return max(0, int((self.end - self.start).total_seconds() // 60))

    def digest(self) -> str:
        """SHA-256 over the projection's JSON: PHI-free input, so the digest is too."""
        document = json.dumps(asdict(self), sort_keys=True, default=str, separators=(",", ":"))
        return hashlib.sha256(document.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class PatientDemographics:
    """PHI of one patient from the webhook body being processed, already cut to what the mapping allows.

    Lives only in memory while the message is built; never stored, logged or hashed into the state.
    """

    family: str | None = None
    given: tuple[str, ...] = ()
    birth_date: str | None = None  # YYYY-MM-DD
    sex: str | None = None  # FHIR administrative gender
    phone: str | None = None
    email: str | None = None
    mrn: str | None = None


@dataclass(frozen=True, slots=True)
class Notes:
    """Opted-in free text (clinic mapping `free_text`): NTE segments after SCH."""

    lines: tuple[str, ...] = field(default=())


def placer_id(lineage: str) -> str:
    """The lineage key (Cal.com's iCalUID, `<first uid>@Cal.com`) as SCH-1/SCH-2; a key too long for
    EI-1 (a calendar provider's iCalUID) is replaced by a SHA-256 that stays the same for the lineage."""
    if len(lineage) <= MAX_ID_LENGTH:
        return lineage
    return "sha256:" + lineage_hash(lineage)


def _ts(moment: datetime, zone: ZoneInfo) -> str:
    local = moment.astimezone(zone)
    return local.strftime("%Y%m%d%H%M%S%z")


def _msh(event: SiuEvent, control_id: str, options: Hl7v2Options, sent_at: datetime, zone: ZoneInfo) -> str:
    legacy = options.version == "2.3.1"
    return segment(
        "MSH",  # MSH-1 is the field separator itself: MSH-2 follows the first `|`
        ENCODING_CHARACTERS,
        components(options.sending_application),
        components(options.sending_facility),
        components(options.receiving_application),
        components(options.receiving_facility),
        _ts(sent_at, zone),
        "",
        components("SIU", event, "SIU_S12"),  # MSH-9.3 message structure: in 2.3.1 too
        components(control_id),
        options.processing_id,
        options.version,
        "",
        "",
        "",
        "",
        "",
        # MSH-18: names are not limited to ASCII.
        "UNICODE" if legacy else "UNICODE UTF-8",
    )


def _event_reason(event: SiuEvent, projection: SiuProjection) -> str:
    if event in ("S15", "S17") and projection.cancel_kind in _CANCEL_REASONS:
        code, text = _CANCEL_REASONS[projection.cancel_kind]
        return components(code, text, "L")
    return components(event, EVENT_NAMES[event], "HL70003")


def _sch(event: SiuEvent, projection: SiuProjection, options: Hl7v2Options, zone: ZoneInfo) -> str:
    appointment_id = components(projection.placer_id, options.appointment_namespace)
    start, end = _ts(projection.start, zone), _ts(projection.end, zone)
    minutes = str(projection.minutes)
    contact = components("", options.contact_name)
    status = "Deleted" if event == "S17" else FILLER_STATUS[projection.status]
    return segment(
        "SCH",
        appointment_id,  # SCH-1 placer appointment id
        appointment_id,  # SCH-2 filler appointment id
        "",
        "",
        "",
        _event_reason(event, projection),  # SCH-6
        components(projection.appointment_reason, projection.appointment_reason.title(), "HL70276"),
        components("Tentative" if projection.status == "pending" else "Normal", "", "HL70277"),
        minutes,  # SCH-9 duration
        components("min"),  # SCH-10 units
        components("", "", f"M{minutes}", start, end),  # SCH-11 timing (TQ: duration, start, end)
        "",
        "",
        "",
        "",
        contact,  # SCH-16 filler contact person
        "",
        "",
        "",
        contact,  # SCH-20 entered by person
        "",
        "",
        "",
        "",
        components(status, "", "HL70278"),  # SCH-25 filler status
    )


def _pid(index: int, person_key: str, who: PatientDemographics | None, options: Hl7v2Options) -> str:
    identifiers = [components(person_key, "", "", options.patient_id_authority, "PT")]
    name = components("", "", "", "", "", "", "U")  # unspecified: the body does not name this patient
    birth_date = sex = ""
    telecom: list[str] = []
    if who is not None:
        if who.mrn:
            identifiers.append(components(who.mrn, "", "", options.mrn_authority, "MR"))
        if who.family or who.given:
            name = components(who.family, " ".join(who.given) if who.given else None, "", "", "", "", "L")
        if who.birth_date:
            birth_date = who.birth_date.replace("-", "")
        if who.sex:
            sex = _SEX.get(who.sex, "U")
        phone = _phone(who.phone, options)
        if phone:
            telecom.append(components(phone, "PRN", "PH"))
        if who.email:
            telecom.append(components("", "NET", "Internet", who.email))
    return segment(
        "PID",
        str(index),
        "",
        REPETITION.join(identifiers),  # PID-3
        "",
        name,  # PID-5
        "",
        birth_date,  # PID-7
        sex,  # PID-8
        "",
        "",
        "",
        "",
        REPETITION.join(telecom),  # PID-13
    )


def _phone(phone: str | None, options: Hl7v2Options) -> str | None:
    """2.3.1 types XTN-1 as TN (`[NN] [(999)]999-9999...`): send the digits only; 2.5.1 takes the text."""
    if not phone or options.version != "2.3.1":
        return phone
    digits = "".join(c for c in phone if c.isdigit())
    return digits if len(digits) >= 2 else None


def _pv1(projection: SiuProjection) -> str:
    place = projection.location.pl() if projection.location else ""
    return segment("PV1", "1", "O", place, "", "", "", projection.provider.xcn())


def render_siu(
    projection: SiuProjection,
    *,
    event: SiuEvent,
    control_id: str,
    options: Hl7v2Options,
    sent_at: datetime,
    demographics: Mapping[str, PatientDemographics] | None = None,
    notes: Notes | None = None,
) -> str:
    """One SIU message as ER7 text (segments separated by CR, no MLLP framing)."""
    zone = ZoneInfo(options.timezone)
    start = _ts(projection.start, zone)
    minutes = str(projection.minutes)
    segments = [_msh(event, control_id, options, sent_at, zone), _sch(event, projection, options, zone)]
    if options.version != "2.3.1":
        # TQ1-6 service duration, TQ1-7 start, TQ1-8 end.
        segments.append(
            segment("TQ1", "1", "", "", "", "", components(minutes, "min"), start, _ts(projection.end, zone))
        )
    lines = list(notes.lines if notes else ())
    if projection.reason is not None:  # the routing form's coded reason for the visit
        reason = projection.reason
        lines.insert(0, f"Reason for visit: {reason.text or reason.code} ({reason.system} {reason.code})")
    for number, line in enumerate(lines, start=1):
        segments.append(segment("NTE", str(number), "P", escape(line)))
    for index, person_key in enumerate(projection.patients, start=1):
        segments.append(_pid(index, person_key, (demographics or {}).get(person_key), options))
        if options.pv1:
            segments.append(_pv1(projection))
    segments.append(segment("RGS", "1"))
    segments.append(segment("AIS", "1", "", projection.service.er7(), start, "", "", minutes, components("min")))
    role = components("AT", "Attending", "HL70443")
    if options.provider_segment == "AIG":
        provider_code = components(projection.provider.id, "", "NPI" if projection.provider.kind == "npi" else "L")
        segments.append(segment("AIG", "1", "", provider_code, components("PROV", "Provider", "L")))
    if projection.location is not None:
        segments.append(segment("AIL", "1", "", projection.location.pl(), components("C", "Clinic", "HL70305")))
    if options.provider_segment == "AIP":
        segments.append(segment("AIP", "1", "", projection.provider.xcn(), role))
    return SEGMENT_SEPARATOR.join(segments)
