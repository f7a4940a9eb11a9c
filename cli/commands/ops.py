"""`calehr review|dlq|sync|audit`: operator commands of the README runbook (implemented in `cli.ops`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from cli import ops
from cli.errors import UsageError
from cli.output import JsonOpt, Output
from cli.target import EndpointOpt, LocalOpt, RegionOpt, StackFileOpt, StackOpt, Target, resolve
from shared.clinic.rules import RULE_NAMES

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
