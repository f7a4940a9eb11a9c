"""`calehr reconcile`: one reconciliation run on demand (implemented in `cli.reconcile`)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from cli import reconcile as reconcile_run
from cli.output import JsonOpt, Output
from cli.target import EndpointOpt, LocalOpt, RegionOpt, StackFileOpt, StackOpt, resolve
from shared.stores.lineages import LineageStateStore
from shared.stores.queue import EventQueue


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
    target = resolve(local=local, stack=stack, stack_file=stack_file, region=region, endpoint_url=endpoint_url)
    key = reconcile_run.api_key(target, api_key_file)
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


def register(app: typer.Typer) -> None:
    app.command(
        epilog=(
            "Examples:\n\n"
            "  calehr reconcile --since 2h --dry-run --stack CalEhrBridge-prod\n\n"
            "  calehr reconcile --since 2h --stack CalEhrBridge-prod\n\n"
            "  CALCOM_API_KEY=cal_test_… calehr reconcile --local --api-url http://127.0.0.1:8790/v2"
        )
    )(reconcile)
