"""Render an `AppointmentView` as a FHIR R4 Appointment (pure), and merge it into the EHR's copy.

The bridge owns: identifiers it issued, status (except EHR-owned workflow states), times, type codes,
the Patient and Practitioner participants, cancelationReason and its tag; `reasonCode` and `comment`
only when it sends them. Everything else on the EHR's resource (comments staff typed, Locations added
by staff, extensions) is preserved on update.
No free text from the booking is written unless the clinic opted a booking question in
(`free_text` in the clinic config): cancellation reasons become a code from the R4
appointment-cancellation-reason code system, routing-form reasons the configured coding.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.clinic.mapping import BY_VISIT_KIND, EventTypeMapping, LocationMapping, VisitKinds
from shared.domain.decide import AppointmentView
from shared.domain.identifiers import IdentifierSystems, Resource

V2_0276 = "http://terminology.hl7.org/CodeSystem/v2-0276"
CANCEL_REASON_SYSTEM = "http://terminology.hl7.org/CodeSystem/appointment-cancellation-reason"
#: The parts of `meta` that are content; the rest (versionId, lastUpdated…) is the server's bookkeeping.
CONTENT_META = ("tag", "security", "profile")
#: Statuses the EHR's own workflow sets; a booked/pending projection never overwrites them.
EHR_OWNED_STATUSES = frozenset({"arrived", "checked-in", "fulfilled", "entered-in-error"})
_CANCEL_CODES = {
    "cancelled": ("oth", "Other"),
    "rejected": ("prov", "Provider"),
    "reschedule_requested": ("prov-resched", "Provider: Rescheduled"),
}


@dataclass(frozen=True, slots=True)
class FreeText:
    """Opted-in free text of the booking version being written: goes to the EHR and nowhere else."""

    comment: str | None = None
    reason: str | None = None


def _iso(moment: Any) -> str:
    return str(moment.strftime("%Y-%m-%dT%H:%M:%SZ"))


def _concept(coding: Any) -> dict[str, Any]:
    concept: dict[str, Any] = {"coding": [{"system": coding.system, "code": coding.code}]}
    if coding.display:
        concept["coding"][0]["display"] = coding.display
    return concept


def appointment_type(view: AppointmentView, event_type: EventTypeMapping, visit_kinds: VisitKinds) -> str:
    if event_type.appointment_type != BY_VISIT_KIND:
        return event_type.appointment_type
    return visit_kinds.follow_up if view.visit_kind == "follow_up" else visit_kinds.new


def _reason(view: AppointmentView, free_text: FreeText | None) -> list[dict[str, Any]]:
    concept: dict[str, Any] = {}
    form = view.intake
    if form is not None and form.reason_system and form.reason_code:
        coding = {"system": form.reason_system, "code": form.reason_code}
        if form.reason_display:
            coding["display"] = form.reason_display
        concept["coding"] = [coding]
    if free_text and free_text.reason:
        concept["text"] = free_text.reason
    return [concept] if concept else []


def render_appointment(
    view: AppointmentView,
    event_type: EventTypeMapping,
    practitioner_ref: str,
    systems: IdentifierSystems,
    *,
    visit_kinds: VisitKinds | None = None,
    free_text: FreeText | None = None,
    location: LocationMapping | None = None,
) -> Resource:
    """The Appointment the bridge wants the EHR to hold for this lineage."""
    details = view.details
    minutes = int((details.end - details.start).total_seconds() // 60)
    participants: list[dict[str, Any]] = [
        {"actor": {"reference": ref}, "required": "required", "status": "accepted"}
        for _, ref, _ in view.patients
        if ref
    ]
    # The booking's own location (when the clinic mapped it) wins over the event type's default.
    place = (location.reference if location else None) or (
        event_type.location_reference if not event_type.telehealth and location is None else None
    )
    if place:
        participants.append({"actor": {"reference": place}, "required": "required", "status": "accepted"})
    participants.append(
        {
            "actor": {"reference": practitioner_ref},
            "required": "required",
            "status": "needs-action" if view.status == "pending" else "accepted",
        }
    )
    resource: Resource = {
        "resourceType": "Appointment",
        "meta": {"tag": [{"system": systems.tag, "code": "calcom"}]},
        "identifier": [
            {"system": systems.lineage, "value": view.lineage},
            *({"system": systems.booking, "value": uid} for uid in view.uids),
        ],
        "status": view.status,
        "appointmentType": {
            "coding": [{"system": V2_0276, "code": appointment_type(view, event_type, visit_kinds or VisitKinds())}]
        },
        "start": _iso(details.start),
        "end": _iso(details.end),
        "participant": participants,
    }
    if minutes > 0:
        resource["minutesDuration"] = minutes
    if event_type.service_type:
        resource["serviceType"] = [_concept(event_type.service_type)]
    if event_type.specialty:
        resource["specialty"] = [_concept(event_type.specialty)]
    if view.status == "cancelled" and view.cancel_kind:
        code, display = _CANCEL_CODES[view.cancel_kind]
        resource["cancelationReason"] = {"coding": [{"system": CANCEL_REASON_SYSTEM, "code": code, "display": display}]}
    if reason := _reason(view, free_text):
        resource["reasonCode"] = reason
    if free_text and free_text.comment:
        resource["comment"] = free_text.comment
    return resource


def projection_hash(resource: Resource) -> str:
    return hashlib.sha256(json.dumps(resource, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# -- the ownership marker ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class WriteMarker:
    """What the bridge signs into every Appointment version it writes (an extension, no PHI).

    * `fence`: the lineage lease's fencing token of the writer; a worker holding an older lease must
      not write over it (docs/sync-semantics.md, "Write protocol").
    * `status`: the status the bridge itself projected. An EHR status that differs from it was set by
      the EHR's own workflow (`arrived`, `fulfilled`…) and is preserved; one that equals it is the
      bridge's to change - judged from the EHR's copy, so a write whose state commit was lost still counts.
    * `digest`: `owned_digest` of the version written. When the EHR copy still has it, every
      bridge-owned field there is the bridge's doing; otherwise someone else changed them since.
    """

    fence: int
    status: str
    digest: str


def _instant(value: Any) -> Any:
    """A FHIR instant as epoch seconds, so servers that reformat times (`…:00Z` → `…:00.000Z`) still agree."""
    if not isinstance(value, str):
        return value
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return value


def _codes(value: Any) -> Any:
    concepts = value if isinstance(value, list) else [value] if value else []
    return sorted(
        f"{c.get('system')}|{c.get('code')}"
        for concept in concepts
        if isinstance(concept, dict)
        for c in concept.get("coding", [])
        if isinstance(c, dict)
    )


def owned_digest(resource: Resource, systems: IdentifierSystems) -> str:
    """A digest of the fields the bridge owns (status, times, type codes, its identifiers, Patient and
    Practitioner participants, cancelationReason), normalised so formatting differences do not count."""
    ours = {systems.lineage, systems.booking}
    owned = {
        "status": resource.get("status"),
        "start": _instant(resource.get("start")),
        "end": _instant(resource.get("end")),
        "minutesDuration": resource.get("minutesDuration"),
        "types": [_codes(resource.get(k)) for k in ("appointmentType", "serviceType", "specialty")],
        "cancelationReason": _codes(resource.get("cancelationReason")),
        "identifiers": sorted(
            f"{i.get('system')}|{i.get('value')}" for i in resource.get("identifier", []) if i.get("system") in ours
        ),
        "participants": sorted(
            f"{ref}|{p.get('status')}"
            for p in resource.get("participant", [])
            if (ref := str((p.get("actor") or {}).get("reference", ""))).startswith(("Patient/", "Practitioner/"))
        ),
    }
    return hashlib.sha256(json.dumps(owned, sort_keys=True, default=str).encode()).hexdigest()[:32]


def marker_of(resource: Resource, systems: IdentifierSystems) -> WriteMarker | None:
    """The bridge's marker on an EHR copy, or None (never written by this bridge, or the EHR dropped it)."""
    for extension in resource.get("extension", []):
        if not isinstance(extension, dict) or extension.get("url") != systems.write_marker:
            continue
        parts = {e.get("url"): e for e in extension.get("extension", []) if isinstance(e, dict)}
        try:
            return WriteMarker(
                fence=int(parts["fence"]["valueInteger"]),
                status=str(parts["status"]["valueCode"]),
                digest=str(parts["digest"]["valueString"]),
            )
        except (KeyError, TypeError, ValueError):
            return None
    return None


def without_marker(resource: Resource, systems: IdentifierSystems) -> Resource:
    """`resource` without the bridge's marker (what "unchanged" compares: a new fence alone is no change)."""
    kept = [
        e for e in resource.get("extension", []) if not (isinstance(e, dict) and e.get("url") == systems.write_marker)
    ]
    stripped = {k: v for k, v in resource.items() if k != "extension"}
    if kept:
        stripped["extension"] = kept
    return stripped


def with_marker(resource: Resource, systems: IdentifierSystems, *, fence: int, status: str) -> Resource:
    """`resource` signed with the bridge's marker for this write (replacing any earlier one)."""
    signed = without_marker(resource, systems)
    marker = {
        "url": systems.write_marker,
        "extension": [
            {"url": "fence", "valueInteger": fence},
            {"url": "status", "valueCode": status},
            {"url": "digest", "valueString": owned_digest(signed, systems)},
        ],
    }
    signed["extension"] = [*signed.get("extension", []), marker]
    return signed


def merge_into_existing(
    existing: Resource, desired: Resource, systems: IdentifierSystems, *, bridge_status: str | None = None
) -> Resource:
    """Apply the bridge-owned fields of `desired` onto the EHR's current resource.

    `bridge_status` is the status the bridge itself projected in its last write (from the EHR copy's
    `WriteMarker`, see `marker_of`): a workflow status the EHR set (`arrived`, `checked-in`,
    `fulfilled`…) is preserved, but one the bridge wrote is the bridge's to change (e.g. `fulfilled`
    from a MEETING_ENDED that a newer reschedule superseded).
    """
    merged = dict(existing)
    for key in ("start", "end", "minutesDuration", "appointmentType", "serviceType", "specialty"):
        if key in desired:
            merged[key] = desired[key]
        else:
            merged.pop(key, None)
    for key in ("reasonCode", "comment"):  # the bridge's only when it has something to say
        if key in desired:
            merged[key] = desired[key]
    status = desired["status"]
    ehr_set_it = existing.get("status") != bridge_status
    if existing.get("status") in EHR_OWNED_STATUSES and ehr_set_it and status in ("booked", "pending"):
        status = existing["status"]
    merged["status"] = status
    # cancelationReason goes with the status: the bridge's when the status is the bridge's, the EHR's when
    # the EHR set it (a status kept above, or the EHR's own no-show with its reason). A reason the bridge
    # wrote with an earlier `cancelled` never outlives that status (e.g. a seated slot emptied, then refilled).
    ehr_reason = status != desired["status"] or (ehr_set_it and existing.get("status") == status)
    if "cancelationReason" in desired and status in ("cancelled", "noshow"):
        merged["cancelationReason"] = desired["cancelationReason"]
    elif status not in ("cancelled", "noshow") or not ehr_reason:
        merged.pop("cancelationReason", None)
    ours = {systems.lineage, systems.booking}
    foreign_ids = [i for i in existing.get("identifier", []) if i.get("system") not in ours]
    merged["identifier"] = [*desired["identifier"], *foreign_ids]
    # Patients and the Practitioner are the bridge's; other actors (a room, a Location staff added) are
    # kept unless the bridge now sends the same actor itself.
    ours_refs = {str(p["actor"]["reference"]) for p in desired["participant"]}
    kept = [
        p
        for p in existing.get("participant", [])
        if not (ref := str((p.get("actor") or {}).get("reference", ""))).startswith(("Patient/", "Practitioner/"))
        and ref not in ours_refs
    ]
    merged["participant"] = [*desired["participant"], *kept]
    meta = dict(existing.get("meta") or {})
    tags = [t for t in meta.get("tag", []) if t.get("system") != systems.tag]
    meta["tag"] = [*desired["meta"]["tag"], *tags]
    merged["meta"] = {k: v for k, v in meta.items() if k in CONTENT_META}
    return merged
