"""`calehr doctor` and `calehr jwks`: can this bridge work with this EHR, and what to register.

    calehr doctor --fhir URL --config clinic.yaml [--profile generic|healthlake|oracle]
                  [--auth-secret-file secret.json | --auth-secret-arn ARN] [--region R]
    calehr jwks (--secret-file secret.json | --secret-arn ARN)

`doctor` only reads: the CapabilityStatement (`/metadata`) where the server has one, an access token
(SMART), a Patient search by the bridge's own identifier system, every mapped Practitioner (by
reference or NPI) and every mapped Location. It prints one line per check and a summary of what will
and will not work; the exit code is 1 when a required check fails. Its output names resource types,
ids, NPIs and HTTP statuses, never tokens, keys or patient data.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

import httpx

from shared.config.clinic import ClinicConfig, ConfigError, load_config
from shared.domain.projection import IdentifierSystems
from shared.ehr.fhir import FhirR4Client
from shared.ehr.oracle import DEFAULT_PATCHABLE
from shared.ehr.profiles import FHIR_PROFILES, ProfileError, auth_from_secret
from shared.ehr.sigv4 import SigV4Auth
from shared.ehr.smart import SmartBackendAuth, SmartConfigError, jwks_from_secret
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


@dataclass(slots=True)
class Report:
    base_url: str
    profile: str
    checks: list[Check] = field(default_factory=list)
    limits: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(c.status == "fail" and c.required for c in self.checks)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def add(self, name: str, status: Status, detail: str, *, required: bool = True) -> None:
        self.checks.append(Check(name, status, detail, required))

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
                    report.add(name, "fail", f"{mapping.reference} does not exist")
                else:
                    report.add(name, "ok", f"{mapping.reference} exists")
                continue
            matches = fhir.search("Practitioner", {"identifier": f"{NPI_SYSTEM}|{mapping.npi}"})
        except EhrError as exc:
            report.add(name, "fail", f"lookup failed: {exc.detail}")
            continue
        if len(matches) == 1:
            report.add(name, "ok", f"NPI {mapping.npi} → Practitioner/{matches[0].id}")
        elif not matches:
            report.add(name, "fail", f"no Practitioner carries NPI {mapping.npi}")
        else:
            report.add(name, "fail", f"{len(matches)} Practitioners carry NPI {mapping.npi}; map by reference instead")


def _check_locations(report: Report, fhir: FhirR4Client, config: ClinicConfig) -> None:
    mappings = [*config.event_types, *([config.default_event_type] if config.default_event_type else [])]
    references = sorted(
        {ref for m in mappings if (ref := getattr(m, "location_reference", None))}
        | {m.reference for m in config.locations if m.reference}
    )
    if not references:
        report.add("locations", "skip", "the clinic mapping names no Locations", required=False)
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
) -> Report:
    """Read-only checks of one EHR endpoint for one clinic mapping; never writes to the EHR."""
    if profile not in FHIR_PROFILES:
        raise ProfileError(f"EHR profile must be one of {', '.join(FHIR_PROFILES)}")
    report = Report(base_url=base_url.rstrip("/"), profile=profile)
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
    print(f"EHR {report.base_url} (profile {report.profile})\n", file=out)
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


# -- command line ---------------------------------------------------------------------------------------


def _secret_document(file: str | None, arn: str | None) -> dict[str, Any] | None:
    if file:
        try:
            document = json.loads(Path(file).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise ProfileError(f"{file}: cannot be read as JSON") from None
        if not isinstance(document, dict):
            raise ProfileError(f"{file}: must be a JSON object")
        return document
    if arn:
        from shared.stores.secrets import SecretReader  # noqa: PLC0415 - needs AWS only when asked

        return SecretReader().json(arn)
    return None


def cmd_doctor(args: argparse.Namespace) -> int:
    try:
        config = load_config(f"file:{args.config}")
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    try:
        document = _secret_document(args.auth_secret_file, args.auth_secret_arn)
        if document is None and args.profile == "healthlake":
            document = {"type": "sigv4", **({"region": args.region} if args.region else {})}
        auth = auth_from_secret(document, args.fhir, timeout_seconds=args.timeout)
    except ProfileError as exc:
        print(f"calehr doctor: {exc}", file=sys.stderr)
        return 2
    report = run_doctor(args.fhir, auth=auth, config=config, profile=args.profile, timeout_seconds=args.timeout)
    print_report(report)
    return report.exit_code


def cmd_jwks(args: argparse.Namespace) -> int:
    try:
        document = _secret_document(args.secret_file, args.secret_arn)
        if document is None:
            raise ProfileError("give --secret-file or --secret-arn")
        jwks = jwks_from_secret(document)
    except (ProfileError, SmartConfigError) as exc:
        print(f"calehr jwks: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(jwks, indent=2))
    return 0


def add_commands(commands: Any) -> None:
    """Register `doctor` and `jwks` on the CLI's subparsers (`argparse._SubParsersAction`)."""
    doctor = commands.add_parser("doctor", help="check an EHR endpoint against the clinic mapping")
    doctor.add_argument("--fhir", required=True, help="FHIR R4 base URL")
    doctor.add_argument("--config", required=True, help="clinic mapping file (YAML/JSON)")
    doctor.add_argument("--profile", choices=FHIR_PROFILES, default="generic")
    source = doctor.add_mutually_exclusive_group()
    source.add_argument("--auth-secret-file", help="EHR auth secret as a JSON file (type none|bearer|smart|sigv4)")
    source.add_argument("--auth-secret-arn", help="EHR auth secret in Secrets Manager")
    doctor.add_argument("--region", help="AWS region for SigV4 (default: from the HealthLake host)")
    doctor.add_argument("--timeout", type=float, default=10.0)
    doctor.set_defaults(run=cmd_doctor)

    jwks = commands.add_parser("jwks", help="print the public JWKS of a SMART secret, for registration")
    jwks_source = jwks.add_mutually_exclusive_group(required=True)
    jwks_source.add_argument("--secret-file", help="the SMART secret as a JSON file")
    jwks_source.add_argument("--secret-arn", help="the SMART secret in Secrets Manager")
    jwks.set_defaults(run=cmd_jwks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="calehr")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
