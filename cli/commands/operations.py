"""Operator commands: `review`, `dlq`, `sync`, `audit`, `reconcile`, `verify` (the README runbook)."""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from cli import ops
from cli import reconcile as reconcile_run
from cli import verify as drift
from cli.errors import UsageError
from cli.output import JsonOpt, Output
from cli.target import EndpointOpt, LocalOpt, RegionOpt, StackFileOpt, StackOpt, Target, resolve
from shared.clinic.rules import RULE_NAMES
from shared.stores.lineages import LineageStateStore
from shared.stores.queue import EventQueue

FORM_ID_PATTERN = re.compile(r"^[A-Za-z0-9-]{1,64}$")


def _target(
    local: bool, stack: str | None, stack_file: Path | None, region: str | None, endpoint_url: str | None
) -> Target:
    return resolve(local=local, stack=stack, stack_file=stack_file, region=region, endpoint_url=endpoint_url)


# -- review ---------------------------------------------------------------------------------------
review_app = typer.Typer(
    help="Messages parked for a person to look at (ambiguous patient, unmapped host, EHR 4xx, ...).",
    no_args_is_help=True,
)


@review_app.command(
    "list", epilog="Examples: calehr review list --local;  calehr review list --stack CalEhrBridge-prod --json"
)
def review_list(
    include_closed: Annotated[bool, typer.Option("--all", help="Include retried and discarded items.")] = False,
    local: LocalOpt = False,
    stack: StackOpt = None,
    stack_file: StackFileOpt = None,
    region: RegionOpt = None,
    endpoint_url: EndpointOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """List review items: id, reason, trigger, when (no patient data)."""
    target = _target(local, stack, stack_file, region, endpoint_url)
    return ops.review_list(target, Output(as_json=as_json), include_closed=include_closed)


@review_app.command("show", epilog="Example: calehr review show 3f2c… --local   (add --with-body only if you must)")
def review_show(
    review_id: Annotated[str, typer.Argument(help="The review item id (`pk` in `review list`).")],
    with_body: Annotated[bool, typer.Option("--with-body", help="Also print the message body (contains PHI).")] = False,
    local: LocalOpt = False,
    stack: StackOpt = None,
    stack_file: StackFileOpt = None,
    region: RegionOpt = None,
    endpoint_url: EndpointOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Show one review item (its body only with --with-body)."""
    target = _target(local, stack, stack_file, region, endpoint_url)
    return ops.review_show(target, Output(as_json=as_json), review_id, with_body=with_body)


@review_app.command(
    "retry",
    epilog=(
        "Examples: calehr review retry ID --local;  calehr review retry --all --stack CalEhrBridge-prod;  "
        "calehr review retry ID --accept-rule min_duration --stack CalEhrBridge-prod"
    ),
)
def review_retry(
    review_ids: Annotated[list[str] | None, typer.Argument(help="Review item ids.")] = None,
    retry_all: Annotated[bool, typer.Option("--all", help="Every open item.")] = False,
    accept_rule: Annotated[
        list[str] | None,
        typer.Option(
            "--accept-rule",
            metavar="RULE",
            help="Let an item parked by this booking rule through (repeatable; audited). "
            f"Rules: {', '.join(RULE_NAMES)}.",
        ),
    ] = None,
    local: LocalOpt = False,
    stack: StackOpt = None,
    stack_file: StackFileOpt = None,
    region: RegionOpt = None,
    endpoint_url: EndpointOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Re-queue review items after the cause was fixed (audited)."""
    if not review_ids and not retry_all:
        raise UsageError("review retry: give review ids or --all")
    unknown = sorted(set(accept_rule or []) - set(RULE_NAMES))
    if unknown:
        raise UsageError(f"--accept-rule: unknown rule(s) {', '.join(unknown)}; the rules are {', '.join(RULE_NAMES)}")
    if accept_rule and retry_all:
        raise UsageError("--accept-rule applies to the items you name, not --all")
    target = _target(local, stack, stack_file, region, endpoint_url)
    return ops.review_retry(
        target,
        Output(as_json=as_json),
        review_ids or [],
        retry_all=retry_all,
        accept_rules=tuple(accept_rule or ()),
    )


@review_app.command("discard", epilog='Example: calehr review discard ID --reason "test booking by staff" --local')
def review_discard(
    review_id: Annotated[str, typer.Argument(help="The review item id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the audit trail; at least 5 characters).")],
    local: LocalOpt = False,
    stack: StackOpt = None,
    stack_file: StackFileOpt = None,
    region: RegionOpt = None,
    endpoint_url: EndpointOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Close a review item without applying it (audited, with the reason)."""
    target = _target(local, stack, stack_file, region, endpoint_url)
    return ops.review_discard(target, Output(as_json=as_json), review_id, reason=reason)


# -- dlq ------------------------------------------------------------------------------------------
dlq_app = typer.Typer(help="The dead-letter queue: messages that exhausted the retry budget.", no_args_is_help=True)


@dlq_app.command(
    "redrive",
    epilog=(
        "Examples: calehr dlq redrive --dry-run --stack CalEhrBridge-prod;  "
        "calehr dlq redrive --rate 5 --stack CalEhrBridge-prod"
    ),
)
def dlq_redrive(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count what would move.")] = False,
    rate: Annotated[float, typer.Option("--rate", help="Messages per second.")] = 5.0,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many messages.")] = 1000,
    local: LocalOpt = False,
    stack: StackOpt = None,
    stack_file: StackFileOpt = None,
    region: RegionOpt = None,
    endpoint_url: EndpointOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Move dead-lettered messages back to the queue, paced (audited)."""
    if rate <= 0:
        raise UsageError("--rate must be positive (messages per second)")
    target = _target(local, stack, stack_file, region, endpoint_url)
    return ops.dlq_redrive(target, Output(as_json=as_json), dry_run=dry_run, rate=rate, limit=limit)


# -- sync -----------------------------------------------------------------------------------------
sync_app = typer.Typer(
    help="Pause or resume syncing to the EHR (the incident lever); webhooks keep queueing.", no_args_is_help=True
)
ControlOpt = Annotated[
    str | None,
    typer.Option(
        "--control-url", envvar="CALEHR_CONTROL_URL", help="A local stack's control URL.", rich_help_panel="Target"
    ),
]


def _sync_target(
    local: bool,
    stack: str | None,
    stack_file: Path | None,
    region: str | None,
    endpoint_url: str | None,
    control_url: str | None,
) -> Target:
    target = _target(local, stack, stack_file, region, endpoint_url)
    if control_url:
        target.control_url = control_url
    return target


@sync_app.command("pause", epilog="Examples: calehr sync pause --local;  calehr sync pause --stack CalEhrBridge-prod")
def sync_pause(
    local: LocalOpt = False,
    stack: StackOpt = None,
    stack_file: StackFileOpt = None,
    region: RegionOpt = None,
    endpoint_url: EndpointOpt = None,
    control_url: ControlOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Stop syncing (AWS: disables the sync function's event source mapping)."""
    target = _sync_target(local, stack, stack_file, region, endpoint_url, control_url)
    return ops.set_sync_enabled(target, Output(as_json=as_json), enabled=False)


@sync_app.command("resume", epilog="Example: calehr sync resume --stack CalEhrBridge-prod")
def sync_resume(
    local: LocalOpt = False,
    stack: StackOpt = None,
    stack_file: StackFileOpt = None,
    region: RegionOpt = None,
    endpoint_url: EndpointOpt = None,
    control_url: ControlOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Sync again; queued messages drain."""
    target = _sync_target(local, stack, stack_file, region, endpoint_url, control_url)
    return ops.set_sync_enabled(target, Output(as_json=as_json), enabled=True)


@sync_app.command("status", epilog="Example: calehr sync status --local --json")
def sync_status(
    local: LocalOpt = False,
    stack: StackOpt = None,
    stack_file: StackFileOpt = None,
    region: RegionOpt = None,
    endpoint_url: EndpointOpt = None,
    control_url: ControlOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Whether sync is running or paused."""
    target = _sync_target(local, stack, stack_file, region, endpoint_url, control_url)
    return ops.sync_status(target, Output(as_json=as_json))


# -- audit ----------------------------------------------------------------------------------------
def audit(
    booking_uid: Annotated[str | None, typer.Argument(help="A Cal.com booking uid (any uid of its lineage).")] = None,
    form: Annotated[str | None, typer.Option("--form", metavar="FORM_ID", help="A routing form's submissions.")] = None,
    local: LocalOpt = False,
    stack: StackOpt = None,
    stack_file: StackFileOpt = None,
    region: RegionOpt = None,
    endpoint_url: EndpointOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """The audit timeline of a booking, or of a routing form's submissions (no patient data)."""
    if (booking_uid is None) == (form is None):
        raise UsageError("audit: give either a booking uid or --form FORM_ID")
    target = _target(local, stack, stack_file, region, endpoint_url)
    out = Output(as_json=as_json)
    if form is not None:
        if not FORM_ID_PATTERN.fullmatch(form):
            raise UsageError("audit: --form must be a routing form id (1-64 letters, digits or hyphens)")
        return ops.form_timeline(target, out, form)
    assert booking_uid is not None
    return ops.audit_timeline(target, out, booking_uid)


# -- reconcile ------------------------------------------------------------------------------------
def reconcile(
    since: Annotated[
        str, typer.Option("--since", help="How far back: 30m, 2h, 7d (at most 90d), or a UTC time.")
    ] = "24h",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Assess only; enqueue nothing.")] = False,
    api_url: Annotated[
        str | None, typer.Option("--api-url", envvar="CALCOM_API_BASE_URL", help="Cal.com API v2 base URL.")
    ] = None,
    api_key_file: Annotated[
        Path | None, typer.Option("--api-key-file", help='A JSON file {"api_key": "cal_..."} (else CALCOM_API_KEY).')
    ] = None,
    max_rps: Annotated[
        float, typer.Option("--max-rps", min=0.1, max=50, help="Cal.com API requests per second.")
    ] = 2.0,
    local: LocalOpt = False,
    stack: StackOpt = None,
    stack_file: StackFileOpt = None,
    region: RegionOpt = None,
    endpoint_url: EndpointOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Run the reconciler now: list bookings changed in the window, queue what the webhooks missed.

    The scheduled run's cursor is not touched. The Cal.com API key comes from --api-key-file,
    CALCOM_API_KEY, (with --stack) the stack's Cal.com API secret, or (with --local) the local stack's
    Cal.com API stub.
    """
    now = datetime.now(UTC)
    start = reconcile_run.parse_since(since, now)
    target = _target(local, stack, stack_file, region, endpoint_url)
    key = _api_key(target, api_key_file)
    base_url = api_url or target.optional("calcom_api_base_url") or "https://api.cal.com/v2"
    return reconcile_run.run(
        Output(as_json=as_json),
        api_key=key,
        api_base_url=base_url,
        state=LineageStateStore(target.state_table, client=target.client("dynamodb")),
        queue=EventQueue(target.queue_url, client=target.client("sqs")),
        start=start,
        now=now,
        dry_run=dry_run,
        max_rps=max_rps,
    )


# -- verify (drift) ----------------------------------------------------------------------------------
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
    target = _target(local, stack, stack_file, region, endpoint_url)
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


def _api_key(target: Target, api_key_file: Path | None) -> str:
    if api_key_file is not None:
        try:
            document = json.loads(api_key_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise UsageError(f"{api_key_file}: cannot be read as JSON") from None
    elif os.environ.get("CALCOM_API_KEY"):
        return os.environ["CALCOM_API_KEY"]
    elif target.kind == "local" and target.values.get("calcom_api_key"):
        return target.values["calcom_api_key"]  # the local stack's Cal.com API stub (its stack file)
    elif target.kind == "stack" or target.optional("calcom_api_secret_name"):
        name = target.get("calcom_api_secret_name")
        document = json.loads(target.client("secretsmanager").get_secret_value(SecretId=name)["SecretString"])
    else:
        raise UsageError("reconcile needs a Cal.com API key: --api-key-file, CALCOM_API_KEY, --stack NAME or --local")
    key = document.get("api_key") if isinstance(document, dict) else None
    if not isinstance(key, str) or not key:
        raise UsageError('the Cal.com API key document has no "api_key" string')
    return key


def register(app: typer.Typer) -> None:
    app.add_typer(review_app, name="review")
    app.add_typer(dlq_app, name="dlq")
    app.add_typer(sync_app, name="sync")
    app.command(
        epilog=(
            "Examples:\n\n"
            "  calehr audit Hq2WnX6tYc9RkP4vJm7sEa --local\n\n"
            "  calehr audit --form 7c1e9a52-0d4b-4c3e-9f8a-2b6d1e0f5a37 --stack CalEhrBridge-prod --json"
        )
    )(audit)
    app.command(
        epilog=(
            "Examples:\n\n"
            "  calehr reconcile --since 2h --dry-run --stack CalEhrBridge-prod\n\n"
            "  calehr reconcile --since 2h --stack CalEhrBridge-prod\n\n"
            "  CALCOM_API_KEY=cal_test_… calehr reconcile --local --api-url http://127.0.0.1:8790/v2"
        )
    )(reconcile)
    app.command(
        epilog=(
            "Examples:\n\n"
            "  calehr verify --since 24h --local\n\n"
            "  calehr verify --booking Hq2WnX6tYc9RkP4vJm7sEa --repair --local --json\n\n"
            "  calehr verify --since 24h --queue --stack CalEhrBridge-prod"
        )
    )(verify)
