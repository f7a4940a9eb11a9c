"""`calehr doctor|jwks`: check the EHR(s) before go-live; print the key to register for SMART."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from cli import doctor as checks
from cli.errors import EXIT_FAILED, UsageError
from cli.output import JsonOpt, Output
from cli.target import EndpointOpt, LocalOpt, RegionOpt, StackFileOpt, StackOpt, resolve
from shared.clinic.source import load_config
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
        clinic = checks.config_from_target(target)
    else:
        raise UsageError("give --config FILE (or --local / --stack NAME)")

    endpoints = checks.endpoints(
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
        document = checks.secret_from_aws(resolve(region=region, endpoint_url=endpoint_url), secret_arn)
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
