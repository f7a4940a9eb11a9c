"""Operator commands: review items, DLQ redrive, pause/resume of sync, and the audit timelines.

They work against AWS (a CloudFormation stack's outputs, `--stack`, or environment variables) or
against the local stack (`--local`, which reads `.devstack/stack.json` written by `calehr dev`); see
`cli.target`. Listings carry no PHI: review bodies are shown only with `--with-body`, which says so on
stderr. Each function builds plain data and prints it through `cli.output.Output` (table or JSON).

Every action (retry, discard, redrive, pause/resume, reading a parked body with `--with-body`) is
audited under the caller's AWS identity (`cli.identity`). What each command needs from IAM, and so which
operator role, is in `cli.roles`.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from cli.errors import CliError
from cli.identity import caller_identity
from cli.output import Output
from cli.target import Target, sync_event_source_mappings
from shared.clinic.rules import RULE_NAMES
from shared.contracts.queue import ACCEPTED_RULES_ATTRIBUTE  # the attribute naming rules accepted on a retry
from shared.stores.audit import AuditTrail
from shared.stores.review import BODY_EXPIRED, ReviewStore

#: The old name of the refusal error; `CliError` is the CLI's one error type.
OpsError = CliError


#: Why a review item can no longer be shown with its body or retried, and what to do instead.
_BODY_EXPIRED_HELP = (
    f"{BODY_EXPIRED}: the message body (patient data) is deleted REVIEW_BODY_RETENTION_DAYS after parking; "
    "the item stays without it. Have the booking sent again (a change to it in Cal.com sends a new webhook; "
    "an earlier reconcile cursor replays it, docs/reconciliation.md), then close the item with "
    '`review discard ID --reason "body expired"`.'
)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")  # as the sync worker stamps its records


# -- review items ---------------------------------------------------------------------------------
def review_list(target: Target, out: Output, *, include_closed: bool) -> int:
    items = ReviewStore(target.review_table, target.client("dynamodb")).list_items(include_closed=include_closed)
    out.table(items, ["pk", "status", "reason", "trigger", "booking_uid", "event_type", "start", "parked_at", "detail"])
    return 0


def review_show(target: Target, out: Output, review_id: str, *, with_body: bool) -> int:
    store = ReviewStore(target.review_table, target.client("dynamodb"))
    item = store.get(review_id)
    if item is None:
        raise OpsError(f"no review item {review_id}")
    item.pop("body", "")  # an item parked before bodies were kept apart still carries it
    body = store.body(review_id) if with_body else None
    if with_body and body is not None:
        AuditTrail(target.audit_table, target.client("dynamodb")).record_operator_action(
            subject=f"review#{review_id}",
            action="review_body_read",
            note="",
            operator=caller_identity(target),
            at=_now(),
            **_booking_of(item),
        )
        out.note("warning: the message body below contains patient data")
    if out.as_json:
        out.json({**item, "body": body} if body is not None else item)
    else:
        out.table([{"field": k, "value": v} for k, v in item.items()], ["field", "value"])
        if body is not None:
            out.say(body)
    if with_body and body is None:  # the PHI-free item was shown; its body is gone
        raise OpsError(f"{review_id}: {_BODY_EXPIRED_HELP}")
    return 0


def _booking_of(item: dict[str, str]) -> dict[str, str]:
    """The booking a review item is about (for the record of an operator's action on it)."""
    return {k: item.get(k, "") for k in ("lineage", "booking_uid", "trigger")}


def _requeue(
    target: Target, body: str, group_id: str, tag: str, *, trigger: str = "", accepted_rules: tuple[str, ...] = ()
) -> str:
    # A new deduplication id: the original one may still be inside SQS's 5-minute dedup window.
    dedup = hashlib.sha256(f"{tag}:{body}".encode()).hexdigest()
    attributes = {"source": {"DataType": "String", "StringValue": "operator-retry"}}
    if trigger:  # parked again, the item keeps the message's trigger
        attributes["trigger"] = {"DataType": "String", "StringValue": trigger}
    if accepted_rules:
        attributes[ACCEPTED_RULES_ATTRIBUTE] = {"DataType": "String", "StringValue": ",".join(accepted_rules)}
    response = target.client("sqs").send_message(
        QueueUrl=target.queue_url,
        MessageBody=body,
        MessageGroupId=group_id or hashlib.sha256(body.encode()).hexdigest(),
        MessageDeduplicationId=dedup,
        MessageAttributes=attributes,
    )
    return str(response["MessageId"])


def _accepted(item: dict[str, str], review_id: str, accept_rules: tuple[str, ...]) -> tuple[str, ...]:
    """The rules an operator accepts for a retry: only for an item a booking rule parked."""
    if not accept_rules:
        return ()
    unknown = sorted(set(accept_rules) - set(RULE_NAMES))
    if unknown:
        raise OpsError(f"unknown booking rule(s) {', '.join(unknown)}; the rules are {', '.join(RULE_NAMES)}")
    if not item.get("reason", "").startswith("rule:"):
        raise OpsError(f"{review_id} was not parked by a booking rule (reason {item.get('reason', '')!r})")
    return tuple(sorted(set(accept_rules)))


def review_retry(
    target: Target,
    out: Output,
    review_ids: list[str],
    *,
    retry_all: bool,
    accept_rules: tuple[str, ...] = (),
) -> int:
    """Re-queue review items; `accept_rules` lets an item parked by those booking rules through (audited)."""
    if accept_rules and retry_all:
        raise OpsError("--accept-rule applies to the items you name, not --all")
    store = ReviewStore(target.review_table, target.client("dynamodb"))
    audit = AuditTrail(target.audit_table, target.client("dynamodb"))
    ids = [i["pk"] for i in store.list_items()] if retry_all else review_ids
    if not ids:
        raise OpsError("nothing to retry: give review ids or --all")
    operator = caller_identity(target)
    retried: list[str] = []
    skipped: list[str] = []
    expired: list[str] = []
    for review_id in ids:
        item = store.get(review_id)
        if item is None or item.get("status") != "open":
            skipped.append(review_id)
            out.say(f"{review_id}: not open, skipped")
            continue
        accepted = _accepted(item, review_id, accept_rules)
        body = store.body(review_id)
        if body is None:
            out.say(f"{review_id}: {BODY_EXPIRED}, not re-queued")
            expired.append(review_id)
            continue
        at = _now()
        note = f"accepted rules: {','.join(accepted)}" if accepted else ""
        _requeue(
            target,
            body,
            item.get("lineage_hash", ""),
            f"retry:{review_id}:{at}",
            trigger=item.get("trigger", ""),
            accepted_rules=accepted,
        )
        if store.close(review_id, status="retried", note=note or "re-queued", operator=operator, at=at):
            audit.record_operator_action(
                subject=f"review#{review_id}",
                action="review_retried",
                note=";".join(part for part in (item.get("reason", ""), note) if part),
                operator=operator,
                at=at,
                **_booking_of(item),
            )
        retried.append(review_id)
        out.say(f"{review_id}: re-queued")
    out.result({"requeued": retried, "skipped": skipped, "expired": expired}, text=f"{len(retried)} re-queued")
    if expired:
        raise OpsError(f"{len(expired)} item(s) not re-queued, {_BODY_EXPIRED_HELP}")
    return 0


def review_discard(target: Target, out: Output, review_id: str, *, reason: str) -> int:
    if len(reason.strip()) < 5:
        raise OpsError("--reason is required (at least 5 characters); it is kept in the audit trail")
    store = ReviewStore(target.review_table, target.client("dynamodb"))
    operator = caller_identity(target)
    at = _now()
    item = store.get(review_id) or {}
    if not store.close(review_id, status="discarded", note=reason.strip(), operator=operator, at=at):
        raise OpsError(f"review item {review_id} is not open")
    AuditTrail(target.audit_table, target.client("dynamodb")).record_operator_action(
        subject=f"review#{review_id}",
        action="review_discarded",
        note=reason.strip(),
        operator=operator,
        at=at,
        **_booking_of(item),
    )
    out.result({"discarded": review_id}, text=f"{review_id}: discarded")
    return 0


# -- DLQ redrive ----------------------------------------------------------------------------------
def dlq_redrive(target: Target, out: Output, *, dry_run: bool, rate: float, limit: int) -> int:
    if rate <= 0:
        raise OpsError("--rate must be positive (messages per second)")
    sqs = target.client("sqs")
    depth = int(
        sqs.get_queue_attributes(QueueUrl=target.dlq_url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"][
            "ApproximateNumberOfMessages"
        ]
    )
    total = min(depth, limit)
    out.note(f"{depth} message(s) in the DLQ; {'would redrive' if dry_run else 'redriving'} {total}")
    if dry_run or total == 0:
        out.result({"depth": depth, "moved": 0, "dry_run": dry_run}, text=f"0 message(s) redriven (of {depth})")
        return 0
    interval = 1.0 / rate
    operator = caller_identity(target)
    with out.progress("redrive", total=total) as progress:
        moved = _redrive(target, progress, total, interval)
    AuditTrail(target.audit_table, target.client("dynamodb")).record_operator_action(
        subject="dlq", action="dlq_redriven", note=f"{moved} message(s)", operator=operator, at=_now()
    )
    out.result({"depth": depth, "moved": moved, "dry_run": False}, text=f"{moved} message(s) redriven")
    return 0


def _redrive(target: Target, progress: Any, total: int, interval: float) -> int:
    sqs = target.client("sqs")
    moved = 0
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
            progress.advance()
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
    return moved


# -- pause / resume -------------------------------------------------------------------------------
def _local_control(target: Target, action: str) -> str:
    assert target.control_url is not None
    target.ensure_running()
    response = httpx.post(f"{target.control_url}/sync/{action}", timeout=10, trust_env=False)
    if response.status_code != 200:
        raise OpsError(f"local stack refused {action}: {response.status_code}")
    return str(response.json().get("result", ""))


def _mappings(target: Target) -> tuple[Any, list[dict[str, Any]]]:
    if not target.sync_function:
        raise OpsError("pause/resume in AWS needs the sync function: use --stack NAME or set CALEHR_SYNC_FUNCTION")
    client = target.client("lambda")
    mappings = sync_event_source_mappings(target)
    if not mappings:
        raise OpsError(f"{target.sync_function} has no event source mapping")
    return client, mappings


def set_sync_enabled(target: Target, out: Output, *, enabled: bool) -> int:
    operator = caller_identity(target)
    action = "sync_resumed" if enabled else "sync_paused"
    if target.control_url:
        state = _local_control(target, "resume" if enabled else "pause")
        _record_sync_action(target, action, operator, note="local pollers")
        out.result({"sync": state}, text=f"sync {'resumed' if enabled else 'paused'} (local pollers)")
        return 0
    client, mappings = _mappings(target)
    rows = []
    for mapping in mappings:
        client.update_event_source_mapping(UUID=mapping["UUID"], Enabled=enabled)
        rows.append({"uuid": mapping["UUID"], "state": "enabled" if enabled else "disabled"})
    _record_sync_action(target, action, operator, note=f"{len(rows)} event source mapping(s)")
    out.table(rows, ["uuid", "state"], data={"sync": "running" if enabled else "paused", "mappings": rows})
    return 0


def _record_sync_action(target: Target, action: str, operator: str, *, note: str) -> None:
    """Pause and resume are audited where the target has an audit table (every stack and the local one)."""
    if target.optional("audit_table"):
        AuditTrail(target.audit_table, target.client("dynamodb")).record_operator_action(
            subject="sync", action=action, note=note, operator=operator, at=_now()
        )


def sync_status(target: Target, out: Output) -> int:
    """`running` or `paused` (the local pollers, or the sync function's event source mappings)."""
    if target.control_url:
        state = _local_control(target, "status")
        out.result({"sync": state}, text=f"sync {state} (local pollers)")
        return 0
    _, mappings = _mappings(target)
    rows = [{"uuid": m["UUID"], "state": str(m.get("State", "")).lower()} for m in mappings]
    enabled = {row["state"] in ("enabled", "enabling", "updating") for row in rows}
    state = "running" if enabled == {True} else "paused" if enabled == {False} else "mixed"
    out.table(rows, ["uuid", "state"], data={"sync": state, "mappings": rows}, title=f"sync {state}")
    return 0


# -- audit ----------------------------------------------------------------------------------------
def _lineage_of_booking(target: Target, booking_uid: str) -> str | None:
    """The lineage of a booking: the alias index, else a review item parked for it (a booking that was only
    ever parked has no lineage state), else the key Cal.com's first booking would have had."""
    ddb = target.client("dynamodb")
    item = ddb.get_item(TableName=target.state_table, Key={"pk": {"S": f"uid#{booking_uid}"}}, ConsistentRead=True)
    if "lineage" in item.get("Item", {}):  # a uid item holding only no-show marks names no lineage yet
        return str(item["Item"]["lineage"]["S"])
    for parked in ReviewStore(target.review_table, ddb).list_items(include_closed=True):
        if parked.get("booking_uid") == booking_uid and parked.get("lineage"):
            return parked["lineage"]
    first = f"{booking_uid}@Cal.com"
    return first if AuditTrail(target.audit_table, ddb).booking_timeline(first) else None


def audit_timeline(target: Target, out: Output, booking_uid: str) -> int:
    lineage = _lineage_of_booking(target, booking_uid)
    if lineage is None:
        raise OpsError(f"the bridge has no record of booking uid {booking_uid}")
    rows = AuditTrail(target.audit_table, target.client("dynamodb")).booking_timeline(lineage)  # as it happened
    for row in rows:
        row["actor"] = f"{row.get('actor_role', '')}:{row.get('actor_ref', '')[:8]}"
        row["ehr"] = (
            f"{row.get('ehr_resource', '')} v{row.get('ehr_version', '')[:8]}" if row.get("ehr_resource") else ""
        )
    columns = ["applied_at", "calcom_created_at", "trigger", "booking_uid", "outcome", "actor", "ehr", "reason"]
    columns.append("config_revision")
    if any(row.get("routing_form") for row in rows):
        columns.append("routing_form")  # the routing form joined to the booking at that moment
    out.table(rows, columns, data={"lineage": lineage, "records": rows}, title=f"lineage {lineage}")
    return 0


def form_timeline(target: Target, out: Output, form_id: str) -> int:
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
    out.table(
        rows,
        ["calcom_created_at", "trigger", "outcome", "reason", "actor", "received_at", "config_revision"],
        data={"form_id": form_id, "outcomes": outcomes, "submissions": rows},
        title=f"routing form {form_id}: {len(rows)} submission(s) ({summary})",
    )
    if "waiting" in outcomes and not out.as_json:
        out.say(
            "waiting: no booking by that person yet when the form arrived; a booking that joins it later"
            " names this form in `audit <booking uid>` (routing_form)."
        )
    return 0
