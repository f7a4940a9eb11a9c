"""Operator commands: review items, DLQ redrive, pause/resume of sync, and the audit timelines.

They work against AWS (resource names from flags or the stack outputs) or against the local stack
(`--local`, which reads `.devstack/stack.json` written by `make dev`). Listings carry no PHI: review
bodies are shown only with `--with-body`, which says so on stderr.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import httpx

from shared.stores.audit import AuditTrail
from shared.stores.review import BODY_EXPIRED, ReviewStore

STACK_FILE = Path(".devstack/stack.json")


class OpsError(Exception):
    """A refusal with a clear message (exit code 1)."""


#: Why a review item can no longer be shown with its body or retried, and what to do instead.
_BODY_EXPIRED_HELP = (
    f"{BODY_EXPIRED}: the message body (patient data) is deleted REVIEW_BODY_RETENTION_DAYS after parking; "
    "the item stays without it. Have the booking sent again (a change to it in Cal.com sends a new webhook; "
    "an earlier reconcile cursor replays it, docs/reconciliation.md), then close the item with "
    '`review discard ID --reason "body expired"`.'
)


@dataclass(frozen=True)
class OpsTarget:
    queue_url: str
    dlq_url: str
    review_table: str
    state_table: str
    audit_table: str
    endpoint: str | None = None
    sync_function: str | None = None
    control_url: str | None = None
    region: str | None = None

    def client(self, service: str) -> Any:
        kwargs: dict[str, Any] = {}
        if self.endpoint:
            kwargs.update(endpoint_url=self.endpoint, aws_access_key_id="testing", aws_secret_access_key="testing")  # noqa: S106
        if self.region or self.endpoint:
            kwargs["region_name"] = self.region or "us-east-1"
        return boto3.client(service, **kwargs)  # type: ignore[call-overload]


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("target (AWS resources, or --local for the local stack)")
    group.add_argument("--local", action="store_true", help=f"use the local stack described in {STACK_FILE}")
    group.add_argument("--stack-file", default=str(STACK_FILE))
    for name in ("queue-url", "dlq-url", "review-table", "state-table", "audit-table", "sync-function", "region"):
        group.add_argument(f"--{name}")
    group.add_argument("--endpoint-url", help="an AWS-compatible endpoint (e.g. the local moto server)")
    group.add_argument("--control-url", help="the local stack's control URL (pause/resume)")


def resolve_target(args: argparse.Namespace) -> OpsTarget:
    if args.local:
        path = Path(args.stack_file)
        if not path.exists():
            raise OpsError(f"{path} not found: start the local stack with `make dev` first")
        info = json.loads(path.read_text())
        return OpsTarget(
            queue_url=info["queue_url"],
            dlq_url=info["dlq_url"],
            review_table=info["review_table"],
            state_table=info["state_table"],
            audit_table=info["audit_table"],
            endpoint=info["aws_endpoint"],
            control_url=info["control_url"],
        )
    missing = [
        n for n in ("queue_url", "dlq_url", "review_table", "state_table", "audit_table") if not getattr(args, n)
    ]
    if missing:
        raise OpsError("missing " + ", ".join("--" + m.replace("_", "-") for m in missing) + " (or use --local)")
    return OpsTarget(
        queue_url=args.queue_url,
        dlq_url=args.dlq_url,
        review_table=args.review_table,
        state_table=args.state_table,
        audit_table=args.audit_table,
        sync_function=args.sync_function,
        region=args.region,
        endpoint=args.endpoint_url,
        control_url=args.control_url,
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _operator() -> str:
    try:
        return getpass.getuser()
    except OSError:
        return "unknown"


def _table(rows: list[dict[str, str]], columns: list[str]) -> None:
    if not rows:
        print("(none)")
        return
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns))


# -- review items ---------------------------------------------------------------------------------
def review_list(target: OpsTarget, *, include_closed: bool, as_json: bool) -> int:
    items = ReviewStore(target.review_table, target.client("dynamodb")).list_items(include_closed=include_closed)
    if as_json:
        print(json.dumps(items, indent=2))
    else:
        _table(items, ["pk", "status", "reason", "trigger", "parked_at", "detail"])
    return 0


def review_show(target: OpsTarget, review_id: str, *, with_body: bool) -> int:
    store = ReviewStore(target.review_table, target.client("dynamodb"))
    item = store.get(review_id)
    if item is None:
        raise OpsError(f"no review item {review_id}")
    item.pop("body", "")  # an item parked before bodies were kept apart still carries it
    print(json.dumps(item, indent=2))
    if with_body:
        body = store.body(review_id)
        if body is None:
            raise OpsError(f"{review_id}: {_BODY_EXPIRED_HELP}")
        print("warning: the message body below contains patient data", file=sys.stderr)
        print(body)
    return 0


def _requeue(target: OpsTarget, body: str, group_id: str, tag: str) -> str:
    # A new deduplication id: the original one may still be inside SQS's 5-minute dedup window.
    dedup = hashlib.sha256(f"{tag}:{body}".encode()).hexdigest()
    response = target.client("sqs").send_message(
        QueueUrl=target.queue_url,
        MessageBody=body,
        MessageGroupId=group_id or hashlib.sha256(body.encode()).hexdigest(),
        MessageDeduplicationId=dedup,
        MessageAttributes={"source": {"DataType": "String", "StringValue": "operator-retry"}},
    )
    return str(response["MessageId"])


def review_retry(target: OpsTarget, review_ids: list[str], *, retry_all: bool) -> int:
    store = ReviewStore(target.review_table, target.client("dynamodb"))
    audit = AuditTrail(target.audit_table, target.client("dynamodb"))
    ids = [i["pk"] for i in store.list_items()] if retry_all else review_ids
    if not ids:
        raise OpsError("nothing to retry: give review ids or --all")
    retried, expired = 0, []
    for review_id in ids:
        item = store.get(review_id)
        if item is None or item.get("status") != "open":
            print(f"{review_id}: not open, skipped")
            continue
        body = store.body(review_id)
        if body is None:
            print(f"{review_id}: {BODY_EXPIRED}, not re-queued")
            expired.append(review_id)
            continue
        at = _now()
        _requeue(target, body, item.get("lineage_hash", ""), f"retry:{review_id}:{at}")
        if store.close(review_id, status="retried", note="re-queued", operator=_operator(), at=at):
            audit.record_operator_action(
                subject=f"review#{review_id}", action="review_retried", note="", operator=_operator(), at=at
            )
        retried += 1
        print(f"{review_id}: re-queued")
    print(f"{retried} re-queued")
    if expired:
        raise OpsError(f"{len(expired)} item(s) not re-queued, {_BODY_EXPIRED_HELP}")
    return 0


def review_discard(target: OpsTarget, review_id: str, *, reason: str) -> int:
    if len(reason.strip()) < 5:
        raise OpsError("--reason is required (at least 5 characters); it is kept in the audit trail")
    store = ReviewStore(target.review_table, target.client("dynamodb"))
    at = _now()
    if not store.close(review_id, status="discarded", note=reason.strip(), operator=_operator(), at=at):
        raise OpsError(f"review item {review_id} is not open")
    AuditTrail(target.audit_table, target.client("dynamodb")).record_operator_action(
        subject=f"review#{review_id}", action="review_discarded", note=reason.strip(), operator=_operator(), at=at
    )
    print(f"{review_id}: discarded")
    return 0


# -- DLQ redrive ----------------------------------------------------------------------------------
def _progress(done: int, total: int) -> None:
    width = 30
    filled = int(width * done / total) if total else width
    print(f"\rredrive [{'#' * filled}{'.' * (width - filled)}] {done}/{total}", end="", file=sys.stderr, flush=True)


def dlq_redrive(target: OpsTarget, *, dry_run: bool, rate: float, limit: int) -> int:
    if rate <= 0:
        raise OpsError("--rate must be positive (messages per second)")
    sqs = target.client("sqs")
    depth = int(
        sqs.get_queue_attributes(QueueUrl=target.dlq_url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"][
            "ApproximateNumberOfMessages"
        ]
    )
    total = min(depth, limit)
    print(f"{depth} message(s) in the DLQ; {'would redrive' if dry_run else 'redriving'} {total}", file=sys.stderr)
    if dry_run or total == 0:
        return 0
    moved, interval = 0, 1.0 / rate
    while moved < total:
        batch = sqs.receive_message(
            QueueUrl=target.dlq_url,
            MaxNumberOfMessages=min(10, total - moved),
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
            WaitTimeSeconds=1,
        ).get("Messages", [])
        if not batch:
            break
        for message in batch:
            started = time.monotonic()
            group = message.get("Attributes", {}).get("MessageGroupId", "")
            _requeue(target, message["Body"], group, f"redrive:{message['MessageId']}")
            sqs.delete_message(QueueUrl=target.dlq_url, ReceiptHandle=message["ReceiptHandle"])
            moved += 1
            _progress(moved, total)
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
    print(file=sys.stderr)
    AuditTrail(target.audit_table, target.client("dynamodb")).record_operator_action(
        subject="dlq", action="dlq_redriven", note=f"{moved} message(s)", operator=_operator(), at=_now()
    )
    print(f"{moved} message(s) redriven")
    return 0


# -- pause / resume -------------------------------------------------------------------------------
def set_sync_enabled(target: OpsTarget, *, enabled: bool) -> int:
    if target.control_url:
        action = "resume" if enabled else "pause"
        response = httpx.post(f"{target.control_url}/sync/{action}", timeout=10, trust_env=False)
        if response.status_code != 200:
            raise OpsError(f"local stack refused {action}: {response.status_code}")
        print(f"sync {'resumed' if enabled else 'paused'} (local pollers)")
        return 0
    if not target.sync_function:
        raise OpsError("--sync-function is required to pause/resume in AWS")
    client = target.client("lambda")
    mappings = client.list_event_source_mappings(FunctionName=target.sync_function)["EventSourceMappings"]
    if not mappings:
        raise OpsError(f"{target.sync_function} has no event source mapping")
    for mapping in mappings:
        client.update_event_source_mapping(UUID=mapping["UUID"], Enabled=enabled)
        print(f"{mapping['UUID']}: {'enabled' if enabled else 'disabled'}")
    return 0


# -- audit ----------------------------------------------------------------------------------------
def audit_timeline(target: OpsTarget, booking_uid: str) -> int:
    item = (
        target.client("dynamodb")
        .get_item(TableName=target.state_table, Key={"pk": {"S": f"uid#{booking_uid}"}}, ConsistentRead=True)
        .get("Item")
    )
    if not item:
        raise OpsError(f"the bridge has no lineage for booking uid {booking_uid}")
    lineage = item["lineage"]["S"]
    rows = AuditTrail(target.audit_table, target.client("dynamodb")).timeline(lineage)
    print(f"lineage {lineage}")
    for row in rows:
        row["actor"] = f"{row.get('actor_role', '')}:{row.get('actor_ref', '')[:8]}"
        row["ehr"] = (
            f"{row.get('ehr_resource', '')} v{row.get('ehr_version', '')[:8]}" if row.get("ehr_resource") else ""
        )
    columns = ["calcom_created_at", "trigger", "booking_uid", "outcome", "actor", "ehr", "reason", "received_at"]
    if any(row.get("routing_form") for row in rows):
        columns.append("routing_form")  # the routing form joined to the booking at that moment
    _table(rows, columns)
    return 0


def form_timeline(target: OpsTarget, form_id: str) -> int:
    """A routing form's submissions, oldest first: how each ended (`joined:N`, `waiting:0`, `no_booking:0`,
    `unmapped_form`, `no_email_answer`). No answers are stored, so none can be shown."""
    rows = AuditTrail(target.audit_table, target.client("dynamodb")).timeline("", partition=f"form#{form_id}")
    if not rows:
        raise OpsError(f"the audit trail has no submissions of routing form {form_id}")
    for row in rows:
        row["actor"] = f"{row.get('actor_role', '')}:{row.get('actor_ref', '')[:8]}"
    outcomes: dict[str, int] = {}
    for row in rows:
        kind = row.get("reason", "").split(":", 1)[0] or "(none)"
        outcomes[kind] = outcomes.get(kind, 0) + 1
    summary = ", ".join(f"{kind} {count}" for kind, count in sorted(outcomes.items()))
    print(f"routing form {form_id}: {len(rows)} submission(s) ({summary})")
    _table(rows, ["calcom_created_at", "trigger", "outcome", "reason", "actor", "received_at", "config_revision"])
    if "waiting" in outcomes:
        print(
            "waiting: no booking by that person yet when the form arrived; a booking that joins it later"
            " names this form in `audit <booking uid>` (routing_form)."
        )
    return 0
