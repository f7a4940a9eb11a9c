"""`calehr doctor|jwks`: check the EHR(s) before go-live; print the key to register for SMART."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from cli import doctor as checks
from cli.errors import EXIT_FAILED, CliError, UsageError
from cli.output import JsonOpt, Output
from cli.target import EndpointOpt, LocalOpt, RegionOpt, StackFileOpt, StackOpt, Target, resolve
from shared.clinic.load import parse_config
from shared.clinic.mapping import ClinicConfig
from shared.clinic.source import load_config
from shared.contracts.deployment import DEFAULT_ROUTE, ROUTE_NAME_PATTERN
from shared.ehr.auth.smart import SmartConfigError, jwks_from_secret
from shared.ehr.profiles import PROFILES, ProfileError

_EHR = "EHR endpoints"


def _pairs(values: list[str] | None, flag: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values or []:
        name, sep, rest = value.partition("=")
        if not sep or not name or not rest:
            raise UsageError(f"{flag} takes NAME=VALUE, got {value!r}")
        pairs[name] = rest
    return pairs


def _secret_from_aws(target: Target, name: str) -> dict[str, Any]:
    value = target.client("secretsmanager").get_secret_value(SecretId=name)["SecretString"]
    try:
        document = json.loads(value)
    except ValueError:
        raise CliError(f"secret {name} is not JSON") from None
    if not isinstance(document, dict):
        raise CliError(f"secret {name} is not a JSON object")
    return document


def _config_from_target(target: Target) -> ClinicConfig:
    source = target.get("clinic_config_source")
    if source.startswith("file:"):
        return load_config(source)
    if source.startswith("ssm:"):
        name = source.removeprefix("ssm:")
        text = target.client("ssm").get_parameter(Name=name)["Parameter"]["Value"]
        return parse_config(text, origin=source)
    raise CliError(f"the clinic mapping comes from {source}: download it and pass --config FILE")


def doctor(
    config: Annotated[Path | None, typer.Option("--config", help="Clinic mapping (default: the target's).")] = None,
    fhir: Annotated[
        str | None, typer.Option("--fhir", help="FHIR R4 base URL of the default EHR.", rich_help_panel=_EHR)
    ] = None,
    profile: Annotated[
        str, typer.Option("--profile", help="generic|healthlake|oracle (default EHR).", rich_help_panel=_EHR)
    ] = "generic",
    auth_secret_file: Annotated[
        Path | None,
        typer.Option(
            "--auth-secret-file",
            help="Default EHR's auth secret as JSON (none|bearer|smart|sigv4).",
            rich_help_panel=_EHR,
        ),
    ] = None,
    auth_secret_arn: Annotated[
        str | None,
        typer.Option("--auth-secret-arn", help="Default EHR's auth secret in Secrets Manager.", rich_help_panel=_EHR),
    ] = None,
    route: Annotated[
        list[str] | None,
        typer.Option("--route", help="Another EHR route: NAME=URL (repeatable).", rich_help_panel=_EHR),
    ] = None,
    route_profile: Annotated[
        list[str] | None, typer.Option("--route-profile", help="NAME=PROFILE of a --route.", rich_help_panel=_EHR)
    ] = None,
    route_auth: Annotated[
        list[str] | None, typer.Option("--route-auth", help="NAME=secret.json of a --route.", rich_help_panel=_EHR)
    ] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds per request.")] = 10.0,
    use_local: LocalOpt = False,
    stack: StackOpt = None,
    stack_file: StackFileOpt = None,
    region: RegionOpt = None,
    endpoint_url: EndpointOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Check every EHR route the clinic mapping uses: capabilities, auth, access, Practitioners, Locations.

    Read-only. Each event type's Location is checked in the EHR that event type routes to (`ehr:`);
    exit 1 when a required check fails. With --stack, endpoints, secrets and the mapping come from
    the deployed stack.
    """
    out = Output(as_json=as_json)
    if profile not in PROFILES:
        raise UsageError(f"--profile must be one of {', '.join(PROFILES)}")
    if auth_secret_file and auth_secret_arn:
        raise UsageError("give --auth-secret-file or --auth-secret-arn, not both")
    target = resolve(local=use_local, stack=stack, stack_file=stack_file, region=region, endpoint_url=endpoint_url)
    uses_target = use_local or stack is not None or stack_file is not None
    if config is not None:
        clinic = load_config(f"file:{config}")
    elif uses_target:
        clinic = _config_from_target(target)
    else:
        raise UsageError("give --config FILE (or --local / --stack NAME)")

    endpoints = _endpoints(
        target,
        uses_target=uses_target,
        fhir=fhir,
        profile=profile,
        auth_file=auth_secret_file,
        auth_arn=auth_secret_arn,
        routes=_pairs(route, "--route"),
        route_profiles=_pairs(route_profile, "--route-profile"),
        route_auth=_pairs(route_auth, "--route-auth"),
        region=region,
        timeout=timeout,
    )
    reports = checks.run_doctor_routes(endpoints, config=clinic, timeout_seconds=timeout)
    if as_json:
        out.json(checks.reports_dict(reports))
    else:
        for index, report in enumerate(reports):
            if index:
                print(file=sys.stdout)
            checks.print_report(report)
        if len(reports) > 1:
            ready = all(r.ok for r in reports)
            print(f"\nAll EHRs: {'ready' if ready else 'NOT ready'} ({len(reports)} routes)")
    return 0 if all(r.ok for r in reports) else EXIT_FAILED


def _endpoints(
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
) -> list[checks.EhrEndpoint]:
    """Each EHR route to check: from the target (stack outputs, local stack), then the flags on top."""
    documents: dict[str, dict[str, Any] | None] = {}
    urls: dict[str, str] = {}
    profiles: dict[str, str] = {DEFAULT_ROUTE: profile}
    if uses_target:
        urls[DEFAULT_ROUTE] = target.get("ehr_base_url")
        profiles[DEFAULT_ROUTE] = target.optional("ehr_profile") or profile
        if (secret := target.optional("ehr_auth_secret_name")) and target.kind == "stack":
            documents[DEFAULT_ROUTE] = _secret_from_aws(target, secret)
        for name, spec in json.loads(target.optional("ehr_routes") or "{}").items():
            urls[name] = spec["base_url"]
            profiles[name] = spec.get("profile", "generic")
            if spec.get("auth_secret_name"):
                documents[name] = _secret_from_aws(target, spec["auth_secret_name"])
    if fhir:
        urls[DEFAULT_ROUTE] = fhir
    if auth_file:
        documents[DEFAULT_ROUTE] = checks.secret_document_file(auth_file)
    if auth_arn:
        documents[DEFAULT_ROUTE] = _secret_from_aws(target, auth_arn)
    urls.update(routes)
    profiles.update(route_profiles)
    for name, file in route_auth.items():
        documents[name] = checks.secret_document_file(Path(file))
    _check_routes(urls, profiles)
    try:
        return [
            checks.EhrEndpoint(
                name,
                url,
                profiles.get(name, "generic"),
                checks.endpoint_auth(
                    documents.get(name), url, profiles.get(name, "generic"), region=region, timeout_seconds=timeout
                ),
            )
            for name, url in urls.items()
        ]
    except ProfileError as exc:
        raise UsageError(str(exc)) from None


def _check_routes(urls: dict[str, str], profiles: dict[str, str]) -> None:
    for name, value in profiles.items():
        if value not in PROFILES:
            raise UsageError(f"route {name}: profile must be one of {', '.join(PROFILES)}")
    for name in urls:
        if not re.fullmatch(ROUTE_NAME_PATTERN, name):
            raise UsageError(f"route name {name!r} must match {ROUTE_NAME_PATTERN}")
    if not urls:
        raise UsageError("give --fhir URL (and --route NAME=URL for other EHRs), or --local / --stack NAME")


def jwks(
    secret_file: Annotated[Path | None, typer.Option("--secret-file", help="The SMART secret as a JSON file.")] = None,
    secret_arn: Annotated[str | None, typer.Option("--secret-arn", help="The SMART secret in Secrets Manager.")] = None,
    region: RegionOpt = None,
    endpoint_url: EndpointOpt = None,
    as_json: JsonOpt = True,
) -> int:
    """Print the public JWKS of a SMART Backend Services secret, to register with the EHR (never the private key)."""
    del as_json  # a JWKS is JSON
    if (secret_file is None) == (secret_arn is None):
        raise UsageError("give --secret-file or --secret-arn")
    if secret_file is not None:
        document = checks.secret_document_file(secret_file)
    else:
        assert secret_arn is not None
        document = _secret_from_aws(resolve(region=region, endpoint_url=endpoint_url), secret_arn)
    try:
        keys = jwks_from_secret(document)
    except (ProfileError, SmartConfigError) as exc:
        raise UsageError(str(exc)) from None
    Output().json(keys)
    return 0


def register(app: typer.Typer) -> None:
    app.command(
        epilog=(
            "Examples:\n\n"
            "  calehr doctor --fhir https://fhir.ehr.example/r4 --config clinic.yaml \\\n"
            "      --auth-secret-file ehr-auth.json\n\n"
            "  calehr doctor --config clinic.yaml --fhir https://main.example/r4 --route cardiology=https://cardio.example/r4\n\n"
            "  calehr doctor --stack CalEhrBridge-prod            # endpoints, secrets and mapping from the stack\n\n"
            "  calehr doctor --local"
        )
    )(doctor)
    app.command(epilog="Example: calehr jwks --secret-file smart-secret.json")(jwks)
