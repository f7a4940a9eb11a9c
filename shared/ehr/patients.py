"""Patient matching that never guesses.

1. A Patient the bridge created before carries our identifier (`<base>/calcom-person|<person key>`):
   exactly one → link.
2. When the booking answered the clinic's MRN question: exactly one Patient with that MRN → link;
   none or several → review (an MRN the EHR does not know is not something to create).
3. Otherwise search by e-mail. A candidate is compatible when its birth date equals the booking's
   (when both are known), else when its family name equals the booking's. Exactly one compatible →
   link; none → create a minimal Patient (conditional create on our identifier, so two workers can
   never make two) or review, by policy; several → review (`ambiguous_patient`), never a guess.

The result says whether the Patient existed (`matched`, including one the bridge created for an earlier
booking) or was created for this booking (`created`): that is the patient-matching evidence for new vs
follow-up visits. A Patient the bridge creates carries a hash of the lineage it was created for, so a
retry of the same booking (after an EHR error or a lost commit) still calls it `created`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from shared.domain.answers import PatientFacts
from shared.domain.identifiers import IdentifierSystems
from shared.ehr.port import EhrClient, Identifier, ReadRequest, Resource, StoredResource
from shared.errors import ReviewRequired


@dataclass(frozen=True, slots=True)
class PatientMatch:
    reference: str
    origin: Literal["matched", "created"]


_GENDERS = {"male": "male", "m": "male", "man": "male", "female": "female", "f": "female", "woman": "female"}


def gender_from(value: Any) -> str:
    """FHIR administrative gender from a booking answer; anything unrecognised is `unknown`."""
    if not isinstance(value, str):
        return "unknown"
    text = value.strip().lower()
    if text in _GENDERS:
        return _GENDERS[text]
    return "other" if text in ("other", "non-binary", "nonbinary", "x") else "unknown"


def _compatible(candidate: Resource, facts: PatientFacts) -> bool:
    if facts.birth_date and candidate.get("birthDate"):
        return bool(candidate["birthDate"] == facts.birth_date)
    families = {str(n.get("family", "")).lower() for n in candidate.get("name", []) if isinstance(n, dict)}
    return bool(facts.family) and (facts.family or "").lower() in families


def minimal_patient(facts: PatientFacts, systems: IdentifierSystems) -> Resource:
    name: dict[str, Any] = {"use": "usual"}
    if facts.family:
        name["family"] = facts.family
    if facts.given:
        name["given"] = facts.given
    telecom = [{"system": "email", "value": facts.email}]
    if facts.phone:
        telecom.append({"system": "phone", "value": facts.phone})
    patient: Resource = {
        "resourceType": "Patient",
        "meta": {"tag": [{"system": systems.tag, "code": "calcom"}]},
        "identifier": [
            {"system": systems.person, "value": facts.person_key},
            *([{"system": systems.first_lineage, "value": facts.lineage_ref}] if facts.lineage_ref else []),
        ],
        "name": [name],
        "telecom": telecom,
        "gender": gender_from(facts.sex),
    }
    if facts.birth_date:
        patient["birthDate"] = facts.birth_date
    return patient


def resolve_patient(
    ehr: EhrClient,
    facts: PatientFacts,
    systems: IdentifierSystems,
    *,
    mrn_system: str | None = None,
    create_when_unmatched: bool = True,
) -> str:
    """Return `Patient/<id>` for this attendee, creating a minimal Patient only when nobody matches."""
    return match_patient(
        ehr, facts, systems, mrn_system=mrn_system, create_when_unmatched=create_when_unmatched
    ).reference


def _by_identifier(facts: PatientFacts, systems: IdentifierSystems) -> dict[str, str]:
    return {"identifier": Identifier(systems.person, facts.person_key).token}


def _by_mrn(facts: PatientFacts, mrn_system: str | None) -> dict[str, str] | None:
    return {"identifier": Identifier(mrn_system, facts.mrn).token} if facts.mrn and mrn_system else None


def _by_email(facts: PatientFacts) -> dict[str, str]:
    return {"email": facts.email}


def match_queries(
    facts: PatientFacts, systems: IdentifierSystems, *, mrn_system: str | None = None
) -> list[ReadRequest]:
    """The searches `match_patient` may make for these facts (rule 1, then rule 2 or 3), in its order: the
    sync sends them ahead in one read batch. `match_patient` builds its searches from the same helpers."""
    second = _by_mrn(facts, mrn_system) or _by_email(facts)
    return [ReadRequest.search("Patient", _by_identifier(facts, systems)), ReadRequest.search("Patient", second)]


def match_patient(
    ehr: EhrClient,
    facts: PatientFacts,
    systems: IdentifierSystems,
    *,
    mrn_system: str | None = None,
    create_when_unmatched: bool = True,
) -> PatientMatch:
    """The attendee's Patient and whether it existed or was created now (see the module rules)."""
    ours = Identifier(systems.person, facts.person_key)
    linked = ehr.search("Patient", _by_identifier(facts, systems))
    if len(linked) == 1:
        return PatientMatch(f"Patient/{linked[0].id}", _origin(linked[0].resource, facts, systems))
    if len(linked) > 1:
        raise ReviewRequired("ambiguous_patient", f"{len(linked)} Patients carry the bridge identifier")
    if (mrn_query := _by_mrn(facts, mrn_system)) is not None:
        by_mrn = ehr.search("Patient", mrn_query)
        if len(by_mrn) == 1:
            return PatientMatch(f"Patient/{by_mrn[0].id}", "matched")
        reason = "unknown_mrn" if not by_mrn else "ambiguous_patient"
        raise ReviewRequired(reason, f"{len(by_mrn)} Patients carry the MRN given in the booking")
    candidates: list[StoredResource] = ehr.search("Patient", _by_email(facts))
    compatible = [c for c in candidates if _compatible(c.resource, facts)]
    if len(compatible) == 1:
        return PatientMatch(f"Patient/{compatible[0].id}", "matched")
    if len(compatible) > 1:
        raise ReviewRequired("ambiguous_patient", f"{len(compatible)} Patients match the attendee")
    if not create_when_unmatched:
        raise ReviewRequired("no_matching_patient", "no Patient matches and the policy is to review")
    created = ehr.create_if_none_exist(minimal_patient(facts, systems), ours)
    return PatientMatch(
        f"Patient/{created.id}", "created" if created.created else _origin(created.resource, facts, systems)
    )


def _origin(patient: Resource, facts: PatientFacts, systems: IdentifierSystems) -> Literal["matched", "created"]:
    """`created` when the bridge created this Patient for the lineage being synced (a retry), else `matched`."""
    made_for = {
        i.get("value")
        for i in patient.get("identifier", [])
        if isinstance(i, dict) and i.get("system") == systems.first_lineage
    }
    return "created" if facts.lineage_ref and facts.lineage_ref in made_for else "matched"
