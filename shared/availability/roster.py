"""Provider roster: Cal.com's hosts, the clinic mapping and the EHR's Practitioners, side by side.

Cal.com API v2 (header `cal-api-version` is not needed by these endpoints; `Authorization: Bearer`):

* `GET /v2/me`: the key's own user `{id, email, username, name}`;
* `GET /v2/organizations/{orgId}/users?take=&skip=`: every user of an organization (org admin key;
  no pagination block: a page shorter than `take` is the last);
* `GET /v2/teams/{teamId}/memberships?take=&skip=`: a team's members `{userId, accepted, user{email}}`.

Findings (`compare`, pure) name staff, never patients: Cal.com user ids and staff e-mails, NPIs and
EHR references. Metrics and logs carry only the counts per kind.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from shared.calcom.hosts import Host
from shared.clinic.mapping import ClinicConfig, PractitionerMapping
from shared.ehr.port import SearchParams, StoredResource

NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"

FindingKind = Literal[
    "unmapped_host",
    "mapping_not_in_calcom",
    "practitioner_missing",
    "practitioner_ambiguous",
    "practitioner_inactive",
    "npi_mismatch",
]


@dataclass(frozen=True, slots=True)
class PractitionerFacts:
    """What one EHR says about one mapped practitioner (`resolved`: by the mapping's reference or NPI)."""

    route: str
    resolved: tuple[StoredResource, ...]
    #: Practitioners whose telecom carries the mapped e-mail.
    by_email: tuple[StoredResource, ...] = ()


@dataclass(frozen=True, slots=True)
class Finding:
    kind: FindingKind
    subject: str
    detail: str
    route: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "subject": self.subject, "route": self.route, "detail": self.detail}


@dataclass(slots=True)
class RosterReport:
    hosts: int = 0
    mapped: int = 0
    findings: list[Finding] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        tally: dict[str, int] = {}
        for finding in self.findings:
            tally[finding.kind] = tally.get(finding.kind, 0) + 1
        return tally

    def as_dict(self) -> dict[str, Any]:
        return {
            "hosts": self.hosts,
            "mapped_practitioners": self.mapped,
            "drift": len(self.findings),
            "counts": self.counts(),
            "findings": [f.as_dict() for f in self.findings],
        }


# -- EHR facts ------------------------------------------------------------------------------------
class PractitionerReader(Protocol):
    def search(self, resource_type: str, params: SearchParams) -> list[StoredResource]: ...

    def read(self, resource_type: str, resource_id: str) -> StoredResource | None: ...


def practitioner_facts(reader: PractitionerReader, route: str, mapping: PractitionerMapping) -> PractitionerFacts:
    """Look the mapped practitioner up by its reference or NPI, and by its e-mail."""
    resolved: list[StoredResource] = []
    if mapping.reference:
        kind, _, resource_id = mapping.reference.partition("/")
        stored = reader.read(kind, resource_id)
        resolved = [stored] if stored is not None else []
    elif mapping.npi:
        resolved = reader.search("Practitioner", {"identifier": f"{NPI_SYSTEM}|{mapping.npi}"})
    by_email = reader.search("Practitioner", {"email": mapping.email.strip().lower()}) if mapping.email else []
    return PractitionerFacts(route, tuple(resolved), tuple(by_email))


def _npis(resource: Mapping[str, Any]) -> set[str]:
    return {
        str(i.get("value"))
        for i in resource.get("identifier") or []
        if isinstance(i, Mapping) and i.get("system") == NPI_SYSTEM and i.get("value")
    }


def _label(mapping: PractitionerMapping) -> str:
    who = (mapping.npi and f"NPI {mapping.npi}") or mapping.reference or mapping.hl7_id or "?"
    host = f"Cal.com user {mapping.calcom_user_id}" if mapping.calcom_user_id is not None else mapping.email
    return f"{who} ({host})"


# -- the comparison (pure) ------------------------------------------------------------------------
def compare(
    config: ClinicConfig, hosts: Iterable[Host] | None, facts: Mapping[int, Sequence[PractitionerFacts]]
) -> RosterReport:
    """Every disagreement between Cal.com's hosts (None: not listed), the mapping and the EHR.

    `facts` is keyed by the index of the practitioner in `config.practitioners`.
    """
    report = RosterReport(mapped=len(config.practitioners))
    if hosts is not None:
        listed = list(hosts)
        report.hosts = len(listed)
        for host in listed:
            if config.practitioner(host.user_id, host.email or None) is None:
                report.findings.append(
                    Finding("unmapped_host", f"Cal.com user {host.user_id}", f"{host.email} ({host.source})")
                )
        ids = {h.user_id for h in listed}
        emails = {h.email.strip().lower() for h in listed if h.email}
        for mapping in config.practitioners:
            by_id = mapping.calcom_user_id is not None and mapping.calcom_user_id in ids
            by_email = bool(mapping.email) and (mapping.email or "").strip().lower() in emails
            if not (by_id or by_email):
                report.findings.append(
                    Finding("mapping_not_in_calcom", _label(mapping), "no Cal.com host with this user id or e-mail")
                )
    for index, mapping in enumerate(config.practitioners):
        for fact in facts.get(index, ()):
            report.findings.extend(_ehr_findings(mapping, fact))
    return report


def _ehr_findings(mapping: PractitionerMapping, fact: PractitionerFacts) -> list[Finding]:
    label = _label(mapping)
    if not mapping.reference and not mapping.npi:
        return []  # an hl7_id-only host: HL7 v2 routes only, no FHIR identity to check
    if not fact.resolved:
        return [Finding("practitioner_missing", label, "no Practitioner in the EHR", fact.route)]
    if len(fact.resolved) > 1:
        found = len(fact.resolved)
        return [Finding("practitioner_ambiguous", label, f"{found} Practitioners carry the NPI", fact.route)]
    practitioner = fact.resolved[0]
    findings = []
    if practitioner.resource.get("active") is False:
        findings.append(
            Finding("practitioner_inactive", label, f"Practitioner/{practitioner.id} is inactive", fact.route)
        )
    mapped_npi = {mapping.npi} if mapping.npi else _npis(practitioner.resource)
    for other in fact.by_email:
        npis = _npis(other.resource)
        if other.id != practitioner.id or (mapped_npi and npis and not npis & mapped_npi):
            findings.append(
                Finding(
                    "npi_mismatch",
                    label,
                    f"the mapped e-mail belongs to Practitioner/{other.id} (NPI {', '.join(sorted(npis)) or 'none'})",
                    fact.route,
                )
            )
    return findings
