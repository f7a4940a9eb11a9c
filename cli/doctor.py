"""`calehr doctor` and `calehr jwks`: can this bridge work with these EHRs, and what to register.

`doctor` only reads, once per EHR route (the default EHR and each `ehr:` route the clinic mapping's
event types name): the CapabilityStatement (`/metadata`) where the server has one, an access token
(SMART), a Patient search by the bridge's own identifier system, every mapped Practitioner (by
reference or NPI), the Locations of the event types routed to that EHR, and the Locations of the
clinic's location mapping. A Practitioner or mapped Location that exists in one of several EHRs is a
warning in the others, not a failure; an event type's Location must exist in the EHR it routes to. It
prints one line per check and a summary of what will and will not work; the exit code is 1 when a
required check fails. Its output names resource types, ids, NPIs and HTTP statuses, never tokens,
keys or patient data.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

import httpx

from cli.errors import CliError, UsageError
from cli.target import Target
from shared.clinic.load import parse_config
from shared.clinic.mapping import ClinicConfig
from shared.clinic.source import load_config
from shared.contracts.deployment import DEFAULT_ROUTE, EHR_PROFILES, FHIR_PROFILES, ROUTE_NAME_PATTERN
from shared.domain.identifiers import IdentifierSystems
from shared.ehr.auth.sigv4 import SigV4Auth
from shared.ehr.auth.smart import SmartBackendAuth
from shared.ehr.fhir.client import FhirR4Client
from shared.ehr.fhir.oracle import DEFAULT_PATCHABLE
from shared.ehr.profiles import ProfileError, auth_from_secret
from shared.errors import EhrError

NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
DEFAULT_IDENTIFIER_BASE = "https://cal-ehr-bridge.dev/fhir/sid"

Status = Literal["ok", "warn", "fail", "skip"]

#: Appointment interactions each profile writes with.
_PROFILE_NEEDS: dict[str, tuple[str, ...]] = {
    "generic": ("create", "read", "update"),
    "healthlake": ("read", "update"),
    "oracle": ("create", "read", "patch"),
}


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    detail: str
    required: bool = True
    #: A mapping entry not tied to one EHR (a Practitioner, a location-mapping Location): with several
    #: EHRs it has to exist in one of them, not in each.
    shared: bool = False


@dataclass(slots=True)
class Report:
    base_url: str
    profile: str
    route: str = DEFAULT_ROUTE
    checks: list[Check] = field(default_factory=list)
    limits: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "base_url": self.base_url,
            "profile": self.profile,
            "ready": self.ok,
            "checks": [
                {"name": c.name, "status": c.status, "detail": c.detail, "required": c.required} for c in self.checks
            ],
            "limits": list(self.limits),
        }

    @property
    def ok(self) -> bool:
        return not any(c.status == "fail" and c.required for c in self.checks)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def add(self, name: str, status: Status, detail: str, *, required: bool = True, shared: bool = False) -> None:
        self.checks.append(Check(name, status, detail, required, shared))

    def check(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)


def _resource_capability(statement: Mapping[str, Any], resource_type: str) -> Mapping[str, Any] | None:
    for rest in statement.get("rest") or []:
        if isinstance(rest, dict) and rest.get("mode", "server") == "server":
            for resource in rest.get("resource") or []:
                if isinstance(resource, dict) and resource.get("type") == resource_type:
                    return resource
    return None


def _interactions(capability: Mapping[str, Any]) -> set[str]:
    return {str(i.get("code")) for i in capability.get("interaction") or [] if isinstance(i, dict)}


def _search_params(capability: Mapping[str, Any]) -> set[str]:
    return {str(p.get("name")) for p in capability.get("searchParam") or [] if isinstance(p, dict)}


def _check_capabilities(report: Report, fhir: FhirR4Client, config: ClinicConfig) -> None:
    try:
        statement = fhir.capabilities()
    except EhrError as exc:
        report.add("capability_statement", "warn", f"/metadata could not be read: {exc.detail}", required=False)
        return
    if statement is None:
        report.add("capability_statement", "skip", "no CapabilityStatement; live checks below decide", required=False)
        return
    version = str(statement.get("fhirVersion", "?"))
    software = (statement.get("software") or {}).get("name") or "unnamed server"
    report.add(
        "fhir_version",
        "ok" if version.startswith("4.0") else "fail",
        f"FHIR {version} ({software})" + ("" if version.startswith("4.0") else "; the bridge speaks FHIR R4 (4.0.x)"),
    )
    appointment = _resource_capability(statement, "Appointment")
    if appointment is None:
        report.add("appointment_capability", "fail", "the CapabilityStatement lists no Appointment resource")
    else:
        have = _interactions(appointment)
        missing = [code for code in _PROFILE_NEEDS[report.profile] if code not in have]
        report.add(
            "appointment_capability",
            "fail" if missing else "ok",
            f"Appointment {', '.join(sorted(have)) or 'no interactions'}"
            + (f"; missing for the {report.profile} profile: {', '.join(missing)}" if missing else ""),
        )
        if report.profile == "generic":
            conditional = bool(appointment.get("conditionalCreate"))
            report.add(
                "conditional_create",
                "ok" if conditional else "fail",
                "conditional create (If-None-Exist) supported"
                if conditional
                else "no conditional create: duplicates cannot be prevented; use the healthlake profile "
                "(client-chosen ids) if the server allows PUT-create, else the oracle profile (id map)",
            )
            versioning = str(appointment.get("versioning", "versioned"))
            report.add(
                "versioned_update",
                "ok" if versioning != "no-version" else "warn",
                f"versioning: {versioning}"
                + ("; If-Match cannot protect staff edits" if versioning == "no-version" else ""),
                required=False,
            )
        if report.profile == "healthlake":
            upsert = bool(appointment.get("updateCreate"))
            report.add(
                "update_create",
                "ok" if upsert else "fail",
                "PUT to a new id creates it" if upsert else "the server does not allow PUT-create (updateCreate)",
            )
    patient = _resource_capability(statement, "Patient")
    if patient is None:
        report.add("patient_capability", "fail", "the CapabilityStatement lists no Patient resource")
    else:
        have = _interactions(patient)
        params = _search_params(patient)
        matching = getattr(config, "patient_matching", None)
        creates = getattr(matching, "on_no_match", "create") == "create"
        needed = ("read", "search-type", "create") if creates else ("read", "search-type")
        missing = [code for code in needed if code not in have]
        report.add(
            "patient_capability",
            "fail" if missing else "ok",
            f"Patient {', '.join(needed)}" if not missing else f"Patient missing: {', '.join(missing)}",
        )
        if "email" not in params:
            report.add(
                "patient_email_search",
                "warn",
                "Patient search by email not listed: existing patients are only found by the bridge identifier",
                required=False,
            )
    if any(p.npi for p in config.practitioners):
        practitioner = _resource_capability(statement, "Practitioner")
        if practitioner is None or "identifier" not in _search_params(practitioner):
            report.add(
                "practitioner_npi_search",
                "warn",
                "Practitioner search by identifier not listed: NPI mappings may not resolve",
                required=False,
            )


def _check_auth(report: Report, auth: httpx.Auth | None) -> None:
    if isinstance(auth, SmartBackendAuth):
        try:
            info = auth.token_info()
        except EhrError as exc:
            report.add("auth", "fail", f"SMART token not issued: {exc.detail}")
            return
        requested = set(auth.credentials.scopes.split())
        granted = set(info.scope.split())
        narrower = sorted(requested - granted)
        report.add("auth", "ok", f"SMART token issued (expires in {info.expires_in} s)")
        report.add(
            "scopes",
            "warn" if narrower else "ok",
            f"granted: {info.scope}" + (f"; not granted: {' '.join(narrower)}" if narrower else ""),
            required=False,
        )
    elif isinstance(auth, SigV4Auth):
        report.add("auth", "ok", f"AWS SigV4 ({auth.service}, {auth.region}); checked by the requests below")
    elif auth is None:
        report.add("auth", "warn", "no auth configured (only acceptable for a local test server)", required=False)
    else:
        report.add("auth", "ok", f"{type(auth).__name__}; checked by the requests below")


def _check_access(report: Report, fhir: FhirR4Client, systems: IdentifierSystems) -> bool:
    try:
        fhir.search("Patient", {"identifier": f"{systems.person}|doctor-probe", "_count": "1"})
    except EhrError as exc:
        report.add("fhir_access", "fail", f"Patient search refused or failed: {exc.detail}")
        return False
    report.add("fhir_access", "ok", "Patient search by the bridge identifier succeeded")
    return True


def _check_practitioners(report: Report, fhir: FhirR4Client, config: ClinicConfig) -> None:
    for index, mapping in enumerate(config.practitioners):
        name = f"practitioners[{index}]"
        try:
            if mapping.reference:
                resource_type, _, resource_id = mapping.reference.partition("/")
                found = fhir.read(resource_type, resource_id)
                if found is None:
                    report.add(name, "fail", f"{mapping.reference} does not exist", shared=True)
                else:
                    report.add(name, "ok", f"{mapping.reference} exists", shared=True)
                continue
            matches = fhir.search("Practitioner", {"identifier": f"{NPI_SYSTEM}|{mapping.npi}"})
        except EhrError as exc:
            report.add(name, "fail", f"lookup failed: {exc.detail}")
            continue
        if len(matches) == 1:
            report.add(name, "ok", f"NPI {mapping.npi} → Practitioner/{matches[0].id}", shared=True)
        elif not matches:
            report.add(name, "fail", f"no Practitioner carries NPI {mapping.npi}", shared=True)
        else:
            report.add(name, "fail", f"{len(matches)} Practitioners carry NPI {mapping.npi}; map by reference instead")


def event_type_mappings(config: ClinicConfig) -> list[Any]:
    return [*config.event_types, *([config.default_event_type] if config.default_event_type else [])]


def routes_of(config: ClinicConfig) -> list[str]:
    """The EHR routes the mapping's event types name, the default route first."""
    return sorted({m.ehr for m in event_type_mappings(config)} | {DEFAULT_ROUTE}, key=lambda r: (r != DEFAULT_ROUTE, r))


def _check_locations(report: Report, fhir: FhirR4Client, config: ClinicConfig) -> None:
    # Only the event types routed to this EHR: their Location is written into this EHR's Appointments.
    own = {ref for m in event_type_mappings(config) if m.ehr == report.route and (ref := m.location_reference)}
    references = sorted(own | {m.reference for m in config.locations if m.reference})
    if not references:
        report.add("locations", "skip", "the clinic mapping names no Locations for this EHR", required=False)
        return
    for reference in references:
        resource_type, _, resource_id = reference.partition("/")
        try:
            found = fhir.read(resource_type, resource_id)
        except EhrError as exc:
            report.add(f"location {reference}", "fail", f"lookup failed: {exc.detail}")
            continue
        report.add(
            f"location {reference}",
            "ok" if found else "fail",
            f"{reference} exists" if found else f"{reference} does not exist",
            shared=reference not in own,
        )


def _profile_limits(report: Report) -> None:
    if report.profile == "healthlake":
        report.limits.append(
            "search is eventually consistent: Patients created seconds ago may not match by e-mail "
            "(dedupe uses deterministic ids, so no duplicates)"
        )
    if report.profile == "oracle":
        report.limits += [
            "no-show cannot be written (no PATCH transition to noshow); staff record it",
            "reschedules are parked for review: changing start/end needs a new slot on Millennium",
            f"updates patch only: {', '.join(sorted(DEFAULT_PATCHABLE))}",
            "a booked create needs a Slot reference on Millennium; confirm the site's create rules",
        ]


def run_doctor(
    base_url: str,
    *,
    auth: httpx.Auth | None,
    config: ClinicConfig,
    profile: str = "generic",
    timeout_seconds: float = 10.0,
    transport: httpx.BaseTransport | None = None,
    identifier_system_base: str = DEFAULT_IDENTIFIER_BASE,
    route: str = DEFAULT_ROUTE,
) -> Report:
    """Read-only checks of one EHR endpoint (the EHR of `route`) for one clinic mapping; never writes."""
    if profile not in FHIR_PROFILES:
        raise ProfileError(f"EHR profile must be one of {', '.join(FHIR_PROFILES)}")
    report = Report(base_url=base_url.rstrip("/"), profile=profile, route=route)
    fhir = FhirR4Client(base_url, auth=auth, timeout_seconds=timeout_seconds, transport=transport)
    try:
        _check_capabilities(report, fhir, config)
        _check_auth(report, auth)
        auth_check = report.check("auth")
        if auth_check is None or auth_check.status != "fail":
            if _check_access(report, fhir, IdentifierSystems(identifier_system_base)):
                _check_practitioners(report, fhir, config)
                _check_locations(report, fhir, config)
            else:
                report.add("mapping", "skip", "Practitioners and Locations not checked: no access", required=False)
    finally:
        fhir.close()
    _profile_limits(report)
    return report


_MARK = {"ok": "[ OK ]", "warn": "[WARN]", "fail": "[FAIL]", "skip": "[SKIP]"}


def print_report(report: Report, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    route = "" if report.route == DEFAULT_ROUTE else f"route {report.route}: "
    print(f"EHR {route}{report.base_url} (profile {report.profile})\n", file=out)
    width = max((len(c.name) for c in report.checks), default=10)
    for check in report.checks:
        optional = "" if check.required or check.status == "ok" else " (optional)"
        print(f"{_MARK[check.status]} {check.name.ljust(width)}  {check.detail}{optional}", file=out)
    failed = [c for c in report.checks if c.status == "fail"]
    print("\nWill not work:" if failed or report.limits else "\nWill not work: nothing found", file=out)
    for check in failed:
        print(f"  - {check.name}: {check.detail}", file=out)
    for limit in report.limits:
        print(f"  - {limit}", file=out)
    if report.ok:
        print(f"\nResult: ready - the bridge can write Appointments with the {report.profile} profile.", file=out)
    else:
        print(f"\nResult: NOT ready - {len(failed)} required check(s) failed.", file=out)


# -- several EHRs ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EhrEndpoint:
    """One EHR route to check: where it is and how to authenticate."""

    route: str
    base_url: str
    profile: str = "generic"
    auth: httpx.Auth | None = None


def run_doctor_routes(
    endpoints: list[EhrEndpoint], *, config: ClinicConfig, timeout_seconds: float = 10.0
) -> list[Report]:
    """One report per EHR route the mapping uses; a route without an endpoint is a failed check.

    A Practitioner or location-mapping Location found in one EHR is only a warning in the others: the
    mapping does not say which EHR a host works in, and one EHR is enough for the bookings that reach it.
    """
    given = {endpoint.route: endpoint for endpoint in endpoints}
    reports = []
    for route in sorted(set(routes_of(config)) | set(given), key=lambda r: (r != DEFAULT_ROUTE, r)):
        endpoint = given.get(route)
        if endpoint is None:
            names = [str(m.id or m.slug) for m in event_type_mappings(config) if m.ehr == route]
            report = Report(base_url="(not given)", profile="?", route=route)
            if names or route != DEFAULT_ROUTE:
                report.add(
                    "endpoint",
                    "fail",
                    f"event types {', '.join(names)} route to '{route}', but no endpoint was given for it "
                    f"(--route {route}=URL, or --stack NAME)",
                )
            else:
                report.add("endpoint", "skip", "no event type routes to the default EHR", required=False)
            reports.append(report)
            continue
        reports.append(
            run_doctor(
                endpoint.base_url,
                auth=endpoint.auth,
                config=config,
                profile=endpoint.profile,
                timeout_seconds=timeout_seconds,
                route=route,
            )
        )
    checked = [r for r in reports if r.base_url != "(not given)"]
    if len(checked) > 1:
        _forgive_shared(checked)
    return reports


def _forgive_shared(reports: list[Report]) -> None:
    found = {c.name: r.route for r in reports for c in r.checks if c.shared and c.status == "ok"}
    for report in reports:
        report.checks = [
            Check(
                c.name,
                "warn",
                f"{c.detail} here (found in the {found[c.name]} EHR; bookings routed here that need it are parked "
                "for review)",
                required=False,
                shared=True,
            )
            if c.shared and c.status == "fail" and c.name in found
            else c
            for c in report.checks
        ]


def secret_document_file(file: Path) -> dict[str, Any]:
    """An EHR auth / SMART secret document from a JSON file."""
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ProfileError(f"{file}: cannot be read as JSON") from None
    if not isinstance(document, dict):
        raise ProfileError(f"{file}: must be a JSON object")
    return document


def endpoint_auth(
    document: Mapping[str, Any] | None, base_url: str, profile: str, *, region: str | None, timeout_seconds: float
) -> httpx.Auth | None:
    """The auth of an endpoint from its secret document (HealthLake without one: SigV4 with local credentials)."""
    if document is None and profile == "healthlake":
        document = {"type": "sigv4", **({"region": region} if region else {})}
    return auth_from_secret(dict(document) if document is not None else None, base_url, timeout_seconds=timeout_seconds)


def reports_dict(reports: list[Report]) -> dict[str, Any]:
    return {"ready": all(r.ok for r in reports), "routes": [r.as_dict() for r in reports]}


# -- what to check: endpoints, secrets and the mapping of a target (the `calehr doctor` command's inputs) --


def secret_from_aws(target: Target, name: str) -> dict[str, Any]:
    value = target.client("secretsmanager").get_secret_value(SecretId=name)["SecretString"]
    try:
        document = json.loads(value)
    except ValueError:
        raise CliError(f"secret {name} is not JSON") from None
    if not isinstance(document, dict):
        raise CliError(f"secret {name} is not a JSON object")
    return document


def config_from_target(target: Target) -> ClinicConfig:
    source = target.get("clinic_config_source")
    if source.startswith("file:"):
        return load_config(source)
    if source.startswith("ssm:"):
        name = source.removeprefix("ssm:")
        text = target.client("ssm").get_parameter(Name=name)["Parameter"]["Value"]
        return parse_config(text, origin=source)
    raise CliError(f"the clinic mapping comes from {source}: download it and pass --config FILE")


def endpoints(
    target: Target,
    *,
    uses_target: bool,
    fhir: str | None,
    profile: str,
    auth_file: Path | None,
    auth_arn: str | None,
    routes: dict[str, str],
    route_profiles: dict[str, str],
    route_auth: dict[str, str],
    region: str | None,
    timeout: float,
) -> list[EhrEndpoint]:
    """Each EHR route to check: from the target (stack outputs, local stack), then the flags on top."""
    documents: dict[str, dict[str, Any] | None] = {}
    urls: dict[str, str] = {}
    profiles: dict[str, str] = {DEFAULT_ROUTE: profile}
    if uses_target:
        urls[DEFAULT_ROUTE] = target.get("ehr_base_url")
        profiles[DEFAULT_ROUTE] = target.optional("ehr_profile") or profile
        if (secret := target.optional("ehr_auth_secret_name")) and target.kind == "stack":
            documents[DEFAULT_ROUTE] = secret_from_aws(target, secret)
        for name, spec in json.loads(target.optional("ehr_routes") or "{}").items():
            urls[name] = spec["base_url"]
            profiles[name] = spec.get("profile", "generic")
            if spec.get("auth_secret_name"):
                documents[name] = secret_from_aws(target, spec["auth_secret_name"])
    if fhir:
        urls[DEFAULT_ROUTE] = fhir
    if auth_file:
        documents[DEFAULT_ROUTE] = secret_document_file(auth_file)
    if auth_arn:
        documents[DEFAULT_ROUTE] = secret_from_aws(target, auth_arn)
    urls.update(routes)
    profiles.update(route_profiles)
    for name, file in route_auth.items():
        documents[name] = secret_document_file(Path(file))
    check_routes(urls, profiles)
    try:
        return [
            EhrEndpoint(
                name,
                url,
                profiles.get(name, "generic"),
                endpoint_auth(
                    documents.get(name), url, profiles.get(name, "generic"), region=region, timeout_seconds=timeout
                ),
            )
            for name, url in urls.items()
        ]
    except ProfileError as exc:
        raise UsageError(str(exc)) from None


def check_routes(urls: dict[str, str], profiles: dict[str, str]) -> None:
    for name, value in profiles.items():
        if value not in EHR_PROFILES:
            raise UsageError(f"route {name}: profile must be one of {', '.join(EHR_PROFILES)}")
    for name in urls:
        if not re.fullmatch(ROUTE_NAME_PATTERN, name):
            raise UsageError(f"route name {name!r} must match {ROUTE_NAME_PATTERN}")
    if not urls:
        raise UsageError("give --fhir URL (and --route NAME=URL for other EHRs), or --local / --stack NAME")
