"""`calehr availability sync|feed-url|rotate` and `calehr providers check` (docs/availability.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cli import availability as feeds
from cli.errors import CliError
from cli.output import JsonOpt, Output
from cli.target import EndpointOpt, LocalOpt, RegionOpt, StackFileOpt, StackOpt, Target, resolve

availability_app = typer.Typer(
    help="Busy feeds: appointments made first in the EHR, as iCalendar URLs that Cal.com reads as busy time.",
    no_args_is_help=True,
)
providers_app = typer.Typer(
    help="The provider roster: Cal.com hosts, the clinic mapping and the EHR's Practitioners.", no_args_is_help=True
)
PractitionerOpt = Annotated[
    str | None,
    typer.Option("--practitioner", metavar="NPI|REF", help="A mapped practitioner: NPI or Practitioner/<id>."),
]
LocationOpt = Annotated[str | None, typer.Option("--location", metavar="REF", help="A mapped room: Location/<id>.")]


def _target(
    local: bool, stack: str | None, stack_file: Path | None, region: str | None, endpoint_url: str | None
) -> Target:
    return resolve(local=local, stack=stack, stack_file=stack_file, region=region, endpoint_url=endpoint_url)


def feed_url(
    practitioner: PractitionerOpt = None,
    location: LocationOpt = None,
    local: LocalOpt = False,
    stack: StackOpt = None,
    stack_file: StackFileOpt = None,
    region: RegionOpt = None,
    endpoint_url: EndpointOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Print a practitioner's (or room's) busy feed URL: add it in Cal.com as an ICS Feed calendar."""
    subject = feeds.feed_subject(practitioner, location)
    target = _target(local, stack, stack_file, region, endpoint_url)
    row = feeds.feed_row(target, feeds.feed_store(target), subject)
    Output(as_json=as_json).result(row, text=f"{row['name']}\n{row['url']}\n({row['busy_intervals']} busy intervals)")
    return 0


def rotate(
    practitioner: PractitionerOpt = None,
    location: LocationOpt = None,
    local: LocalOpt = False,
    stack: StackOpt = None,
    stack_file: StackFileOpt = None,
    region: RegionOpt = None,
    endpoint_url: EndpointOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Give a feed a new URL; the old one stops answering at once (update it in Cal.com)."""
    subject = feeds.feed_subject(practitioner, location)
    target = _target(local, stack, stack_file, region, endpoint_url)
    store = feeds.feed_store(target)
    if store.feed(subject.feed_id) is None:
        raise CliError(f"no busy feed for {subject.subject} yet: run `calehr availability sync` first")
    store.rotate(subject.feed_id)
    row = feeds.feed_row(target, store, subject)
    Output(as_json=as_json).result(
        row, text=f"{row['name']}\nnew URL: {row['url']}\nThe old URL now answers 404: replace it in Cal.com."
    )
    return 0


def sync(
    full: Annotated[bool, typer.Option("--full/--incremental", help="Sweep the whole window (default).")] = True,
    local: LocalOpt = False,
    stack: StackOpt = None,
    stack_file: StackFileOpt = None,
    region: RegionOpt = None,
    endpoint_url: EndpointOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Bring every busy feed up to date now (locally in this process; with --stack by invoking the
    scheduled function once). Exit 1 when a feed could not be brought up to date."""
    target = _target(local, stack, stack_file, region, endpoint_url)
    out = Output(as_json=as_json)
    if target.kind == "local":
        report = feeds.local_run(target).feeds(full=full).as_dict()
    else:
        name = target.get("availability_function")
        answer = target.client("lambda").invoke(
            FunctionName=name, Payload=json.dumps({"full": full}).encode(), InvocationType="RequestResponse"
        )
        payload = json.loads(answer["Payload"].read() or b"{}")
        if answer.get("FunctionError"):
            raise CliError(f"the availability function failed: {str(payload.get('errorType', ''))[:80]}")
        report = payload.get("availability", {})
    rows = report.get("changes", [])
    out.table(
        rows, ["feed", "route", "mode", "read", "busy", "added", "removed", "problem"], data=report, empty="(no feeds)"
    )
    return 1 if report.get("failed") else 0


def check(
    org_id: Annotated[int | None, typer.Option("--org-id", min=1, help="Cal.com organization: its users.")] = None,
    team_id: Annotated[
        list[int] | None, typer.Option("--team-id", min=1, help="Cal.com team: its members (repeatable).")
    ] = None,
    api_url: Annotated[
        str | None, typer.Option("--api-url", envvar="CALCOM_API_BASE_URL", help="Cal.com API v2 base URL.")
    ] = None,
    no_calcom: Annotated[bool, typer.Option("--no-calcom", help="Compare only the mapping and the EHR.")] = False,
    local: LocalOpt = False,
    stack: StackOpt = None,
    stack_file: StackFileOpt = None,
    region: RegionOpt = None,
    endpoint_url: EndpointOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Compare Cal.com's hosts, the clinic mapping and the EHR's Practitioners (by NPI and e-mail):
    unmapped hosts, mapped practitioners missing or inactive in the EHR, NPI mismatches. Exit 1 on drift.

    The Cal.com API key comes from CALCOM_API_KEY, the local stack, or (with --stack) the stack's secret.
    """
    from shared.availability.scheduled_run import AvailabilityRun  # noqa: PLC0415
    from shared.calcom.api import CalcomApiClient  # noqa: PLC0415

    target = _target(local, stack, stack_file, region, endpoint_url)
    out = Output(as_json=as_json)
    work: AvailabilityRun = feeds.local_run(target) if target.kind == "local" else feeds.stack_run(target)
    api = None
    if not no_calcom:
        base = api_url or target.optional("calcom_api_base_url") or "https://api.cal.com/v2"
        api = CalcomApiClient(feeds.calcom_key(target), base_url=base)
    if org_id is None and target.kind == "local" and target.values.get("calcom_org_id", "").isdigit():
        org_id = int(target.values["calcom_org_id"])  # the local stack's recorded organization
    try:
        report = work.roster(api, org_id=org_id, team_ids=tuple(team_id or ()))
    finally:
        if api is not None:
            api.close()
    rows = [f.as_dict() for f in report.findings]
    out.table(rows, ["kind", "subject", "route", "detail"], data=report.as_dict(), empty="(no drift)")
    if not as_json:
        out.say(f"{report.hosts} Cal.com hosts, {report.mapped} mapped practitioners, {len(rows)} finding(s)")
    return 1 if rows else 0


def register(app: typer.Typer) -> None:
    availability_app.command(
        "sync",
        epilog="Examples: calehr availability sync --local;  calehr availability sync --stack CalEhrBridge-prod --json",
    )(sync)
    availability_app.command(
        "feed-url",
        epilog=(
            "Examples: calehr availability feed-url --practitioner 1234567893 --local;  "
            "calehr availability feed-url --location Location/maple-grove-main --stack CalEhrBridge-prod --json"
        ),
    )(feed_url)
    availability_app.command(
        "rotate", epilog="Example: calehr availability rotate --practitioner 1234567893 --stack CalEhrBridge-prod"
    )(rotate)
    providers_app.command(
        "check",
        epilog=(
            "Examples: calehr providers check --local;  "
            "calehr providers check --org-id 88 --stack CalEhrBridge-prod --json;  "
            "calehr providers check --local --no-calcom"
        ),
    )(check)
    app.add_typer(availability_app, name="availability")
    app.add_typer(providers_app, name="providers")
