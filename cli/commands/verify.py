"""`calehr verify`: drift between each lineage's projection and the EHR copy (implemented in `cli.verify`)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from cli import reconcile as reconcile_run
from cli import verify as drift
from cli.errors import UsageError
from cli.output import JsonOpt, Output
from cli.target import EndpointOpt, LocalOpt, RegionOpt, StackFileOpt, StackOpt, resolve


def verify(
    since: Annotated[
        str | None, typer.Option("--since", help="Only lineages changed in this window: 30m, 24h, 7d or a UTC time.")
    ] = None,
    lineage: Annotated[str | None, typer.Option("--lineage", help="One lineage key (an iCalUID).")] = None,
    booking: Annotated[str | None, typer.Option("--booking", help="The lineage of this Cal.com booking uid.")] = None,
    repair: Annotated[
        bool, typer.Option("--repair", help="Rewrite what the bridge itself left stale (audited); never staff edits.")
    ] = False,
    config: Annotated[Path | None, typer.Option("--config", help="Clinic mapping (default: the target's).")] = None,
    queue: Annotated[
        bool,
        typer.Option(
            "--queue",
            help="Queue the checks for the sync function (its role, its lease, its audit records); it repairs "
            "what the bridge left stale and reports the rest. Required against --stack.",
        ),
    ] = False,
    local: LocalOpt = False,
    stack: StackOpt = None,
    stack_file: StackFileOpt = None,
    region: RegionOpt = None,
    endpoint_url: EndpointOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Compare each lineage's projection with the EHR's copy (drift); exit 1 while drift is left.

    Verdicts: in_sync, bridge_stale (repaired with --repair), ehr_changed (someone changed bridge-owned
    fields in the EHR: reported only), unmarked, missing, cannot_read_back (HL7 v2), busy. With --queue the
    sync function checks instead: see each verdict with `calehr audit <uid>` and the DriftFound metric.
    """
    if sum(x is not None for x in (since, lineage, booking)) > 1:
        raise UsageError("give at most one of --since, --lineage, --booking")
    target = resolve(local=local, stack=stack, stack_file=stack_file, region=region, endpoint_url=endpoint_url)
    if target.kind == "stack" and not queue:
        raise UsageError(
            "against a deployed stack the drift check runs in the sync function: add --queue (operators do not "
            "write the EHR or the bridge's audit records themselves)"
        )
    window = reconcile_run.parse_since(since, datetime.now(UTC)) if since else None
    keys = drift.lineages(target, lineage=lineage, booking=booking, since=window)
    if queue:
        return drift.queue_checks(target, Output(as_json=as_json), keys)
    service = drift.build_service(target, drift.config_of(target, config))
    out = Output(as_json=as_json)
    with out.progress("verifying lineages", total=len(keys)) as ticker:
        verdicts = drift.check(service, keys, repair=repair, progress=ticker.advance)
    return drift.report(out, verdicts)


def register(app: typer.Typer) -> None:
    app.command(
        epilog=(
            "Examples:\n\n"
            "  calehr verify --since 24h --local\n\n"
            "  calehr verify --booking Hq2WnX6tYc9RkP4vJm7sEa --repair --local --json\n\n"
            "  calehr verify --since 24h --queue --stack CalEhrBridge-prod"
        )
    )(verify)
