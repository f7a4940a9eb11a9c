"""`calehr`: the developer and operator command line.

    calehr dev                         run the bridge locally, send the demo bookings, show the result
    calehr serve                       run the local stack and print its endpoints as one JSON line
    calehr send FILE... --url --secret sign and POST webhook bodies like Cal.com does
    calehr appointments --fhir URL     show the bridge's Appointments in a FHIR server
    calehr config validate FILE        check a clinic mapping file and list every problem
    calehr audit BOOKING_UID | --form FORM_ID   the audit timeline of a booking or of a routing form

Exit codes: 0 success, 1 the action failed (e.g. a webhook refused, invalid config), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import httpx
from botocore.exceptions import BotoCoreError, ClientError

from devstack import ops
from devstack.doctor import add_commands as add_ehr_commands
from shared.calcom.signature import sign
from shared.config.clinic import ConfigError, load_config

DEMO_DIR = Path(__file__).resolve().parent / "demo"
# Routing-form intake first: a returning patient answers the demo form, then books a `by-visit-kind`
# visit within the join window; the Appointment gets FOLLOWUP and the coded reason from the form.
DEMO_INTAKE = ("intake_form_submitted.json", "intake_booking_created.json")
DEMO_BOOKINGS = (
    "booking_created.json",
    "booking_requested.json",
    "booking_created_after_confirmation.json",
    "booking_rescheduled.json",
    "meeting_ended.json",
    "form_submitted.json",
    "ooo_created.json",
)
STACK_FILE = ops.STACK_FILE
FIXTURES_DIR = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "calcom"
DEMO_BODIES = (*(DEMO_DIR / n for n in DEMO_INTAKE), *(FIXTURES_DIR / n for n in DEMO_BOOKINGS))
FORM_ID_PATTERN = re.compile(r"^[A-Za-z0-9-]{1,64}$")
DEMO_FORM_ID = "7c1e9a52-0d4b-4c3e-9f8a-2b6d1e0f5a37"


class UsageError(Exception):
    pass


def compact_body(path: Path, *, raw: bool = False) -> bytes:
    """The body Cal.com would send for a fixture file: compact JSON, UTF-8, not ASCII-escaped."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: cannot be read ({exc.strerror})") from None
    if raw:
        return data
    try:
        document = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UsageError(f"{path}: not valid JSON (use --raw to send it as it is)") from None
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def post_webhook(url: str, secret: str, body: bytes, client: httpx.Client | None = None) -> httpx.Response:
    headers = {"Content-Type": "application/json", "X-Cal-Signature-256": sign(secret, body)}
    if client is not None:
        return client.post(url, content=body, headers=headers)
    return httpx.post(url, content=body, headers=headers, timeout=30, trust_env=False)


def cmd_send(args: argparse.Namespace) -> int:
    failures = 0
    for name in args.files:
        body = compact_body(Path(name), raw=args.raw)
        try:
            response = post_webhook(args.url, args.secret, body)
        except httpx.HTTPError as exc:
            print(f"{name}: not delivered ({type(exc).__name__})", file=sys.stderr)
            failures += 1
            continue
        print(f"{name}: {response.status_code} {response.text}")
        failures += response.status_code >= 300
    return 1 if failures else 0


def appointment_rows(fhir_base: str) -> list[dict[str, str]]:
    response = httpx.get(f"{fhir_base}/Appointment", params={"_count": "100"}, timeout=10, trust_env=False)
    response.raise_for_status()
    rows = []
    for entry in response.json().get("entry", []):
        appointment = entry["resource"]
        uids = [i["value"] for i in appointment.get("identifier", []) if i["system"].endswith("calcom-booking-uid")]
        actors = [p.get("actor", {}).get("reference", "") for p in appointment.get("participant", [])]
        reasons = [
            concept.get("coding", [{}])[0].get("display") or concept.get("text", "")
            for concept in appointment.get("reasonCode", [])
        ]
        rows.append(
            {
                "id": appointment["id"][:8],
                "status": appointment["status"],
                "start (UTC)": appointment.get("start", ""),
                "type": appointment.get("appointmentType", {}).get("coding", [{}])[0].get("code", ""),
                "reason": ",".join(r for r in reasons if r),
                "booking uids": ",".join(uids),
                "participants": ",".join(a.split("/")[0] for a in actors),
            }
        )
    return sorted(rows, key=lambda r: r["start (UTC)"])


def print_table(rows: list[dict[str, str]], out: TextIO | None = None) -> None:
    out = out or sys.stdout
    if not rows:
        print("(no appointments)", file=out)
        return
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns), file=out)
    print("  ".join("-" * widths[c] for c in columns), file=out)
    for row in rows:
        print("  ".join(row[c].ljust(widths[c]) for c in columns), file=out)


def cmd_appointments(args: argparse.Namespace) -> int:
    print_table(appointment_rows(args.fhir))
    return 0


def cmd_config_validate(args: argparse.Namespace) -> int:
    try:
        config = load_config(f"file:{args.file}")
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(f"{args.file}: valid ({len(config.event_types)} event types, {len(config.practitioners)} practitioners)")
    return 0


def _wait_for_signal() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()


def _queue_drained(stack: Any, timeout: float = 60.0) -> bool:
    sqs = stack.resources.client("sqs")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        attributes = sqs.get_queue_attributes(
            QueueUrl=stack.resources.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        if (
            attributes["ApproximateNumberOfMessages"] == "0"
            and attributes["ApproximateNumberOfMessagesNotVisible"] == "0"
        ):
            return True
        time.sleep(0.5)
    return False


def cmd_dev(args: argparse.Namespace) -> int:
    from devstack.stack import LocalStack  # noqa: PLC0415 - starts heavy services only when asked

    # The handlers' structured logs and EMF metrics go to a file; the console shows the walkthrough.
    log_path = Path(args.log_file)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_file = log_path.open("a", encoding="utf-8")
    console = sys.stdout
    sys.stdout = log_file

    def say(*parts: object) -> None:
        print(*parts, file=console, flush=True)

    stack = LocalStack(workers=args.workers, api_port=args.api_port, fhir_port=args.fhir_port)
    say("Starting the local bridge (moto, Medplum FHIR engine, local API, sync poller, audit archive)...")
    say(f"Handler logs and metrics: {log_path}")
    with stack:
        info = stack.describe()
        stack.write_description(STACK_FILE)
        say(f"\n  Webhook URL     {info['webhook_url']}")
        say(f"  Webhook secret  {info['webhook_secret']}")
        say(f"  FHIR base URL   {info['fhir_base_url']}")
        say(f"  AWS (moto)      {info['aws_endpoint']}")
        say(f"  Audit archive   s3://{info['audit_archive_bucket']} (Object Lock, COMPLIANCE)\n")
        if not args.no_demo:
            say("Sending the demo bookings, signed like Cal.com...")
            for path in DEMO_BODIES:
                response = post_webhook(info["webhook_url"], info["webhook_secret"], compact_body(path))
                say(f"  {path.name:42} {response.status_code} {response.json().get('status', response.text)}")
            drained = _queue_drained(stack)
            say("\nAppointments in the FHIR server" + ("" if drained else " (queue not yet drained)") + ":\n")
            print_table(appointment_rows(info["fhir_base_url"]), out=console)
            say(
                "\nThe general visit on 2025-06-19 was joined to the routing form its patient answered 6 minutes"
                " before booking\n(Returning patient -> FOLLOWUP; symptom Headache -> coded reasonCode). The form's"
                f" audit trail:\n  .venv/bin/python -m devstack audit --form {DEMO_FORM_ID} --local"
            )
        say(
            "\nServing. Send more with:\n"
            f"  .venv/bin/python -m devstack send FILE --url {info['webhook_url']} --secret {info['webhook_secret']}\n"
            "Press Ctrl-C to stop."
        )
        _wait_for_signal()
    say("Stopped.")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from devstack.stack import LocalStack  # noqa: PLC0415

    stack = LocalStack(workers=args.workers, webhook_secret=args.secret)
    with stack:
        if args.stack_file:
            stack.write_description(Path(args.stack_file))
        print(json.dumps(stack.describe()), flush=True)
        _wait_for_signal()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="calehr", description="Cal EHR Bridge developer and operator CLI")
    commands = parser.add_subparsers(dest="command", required=True)

    send = commands.add_parser("send", help="sign and POST webhook body files")
    send.add_argument("files", nargs="+", metavar="FILE")
    send.add_argument("--url", required=True)
    send.add_argument("--secret", required=True)
    send.add_argument("--raw", action="store_true", help="send the file bytes as they are")
    send.set_defaults(run=cmd_send)

    dev = commands.add_parser("dev", help="run the bridge locally with demo bookings")
    dev.add_argument("--workers", type=int, default=1, choices=range(1, 9))
    dev.add_argument("--api-port", type=int, default=8787)
    dev.add_argument("--fhir-port", type=int, default=8103)
    dev.add_argument("--no-demo", action="store_true")
    dev.add_argument("--log-file", default=".devstack/bridge.log")
    dev.set_defaults(run=cmd_dev)

    serve = commands.add_parser("serve", help="run the local stack, print endpoints as JSON")
    serve.add_argument("--workers", type=int, default=1, choices=range(1, 9))
    serve.add_argument("--secret", default=None)
    serve.add_argument("--stack-file", default=None, help="also write the endpoints to this file")
    serve.set_defaults(run=cmd_serve)

    appointments = commands.add_parser("appointments", help="list the bridge's Appointments")
    appointments.add_argument("--fhir", required=True)
    appointments.set_defaults(run=cmd_appointments)

    config = commands.add_parser("config", help="clinic configuration")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    validate = config_commands.add_parser("validate", help="validate a mapping file")
    validate.add_argument("file")
    validate.set_defaults(run=cmd_config_validate)
    _add_operator_commands(commands)
    add_ehr_commands(commands)  # doctor, jwks
    return parser


def _add_operator_commands(commands: Any) -> None:
    review = commands.add_parser("review", help="review items (parked messages)")
    review_commands = review.add_subparsers(dest="review_command", required=True)
    listing = review_commands.add_parser("list", help="list review items (no PHI)")
    listing.add_argument("--all", action="store_true", help="include retried and discarded items")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=lambda a: ops.review_list(ops.resolve_target(a), include_closed=a.all, as_json=a.json))
    show = review_commands.add_parser("show", help="show one review item")
    show.add_argument("review_id")
    show.add_argument("--with-body", action="store_true", help="also print the message body (contains PHI)")
    show.set_defaults(run=lambda a: ops.review_show(ops.resolve_target(a), a.review_id, with_body=a.with_body))
    retry = review_commands.add_parser("retry", help="re-queue review items after a fix")
    retry.add_argument("review_ids", nargs="*")
    retry.add_argument("--all", action="store_true")
    retry.set_defaults(run=lambda a: ops.review_retry(ops.resolve_target(a), a.review_ids, retry_all=a.all))
    discard = review_commands.add_parser("discard", help="close a review item without applying it")
    discard.add_argument("review_id")
    discard.add_argument("--reason", required=True)
    discard.set_defaults(run=lambda a: ops.review_discard(ops.resolve_target(a), a.review_id, reason=a.reason))
    for sub in (listing, show, retry, discard):
        ops.add_target_arguments(sub)

    dlq = commands.add_parser("dlq", help="dead-letter queue")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True)
    redrive = dlq_commands.add_parser("redrive", help="move DLQ messages back to the queue")
    redrive.add_argument("--dry-run", action="store_true")
    redrive.add_argument("--rate", type=float, default=5.0, help="messages per second (default 5)")
    redrive.add_argument("--limit", type=int, default=1000)
    redrive.set_defaults(
        run=lambda a: ops.dlq_redrive(ops.resolve_target(a), dry_run=a.dry_run, rate=a.rate, limit=a.limit)
    )
    ops.add_target_arguments(redrive)

    sync = commands.add_parser("sync", help="pause or resume syncing to the EHR (incident lever)")
    sync_commands = sync.add_subparsers(dest="sync_command", required=True)
    for name, enabled in (("pause", False), ("resume", True)):
        lever = sync_commands.add_parser(name)
        lever.set_defaults(run=lambda a, e=enabled: ops.set_sync_enabled(ops.resolve_target(a), enabled=e))
        ops.add_target_arguments(lever)

    audit = commands.add_parser("audit", help="the audit timeline of a booking, or of a routing form's submissions")
    audit.add_argument("booking_uid", nargs="?", help="a Cal.com booking uid (any uid of its lineage)")
    audit.add_argument("--form", metavar="FORM_ID", help="a routing form id: its submissions and how each ended")
    audit.set_defaults(run=cmd_audit)
    ops.add_target_arguments(audit)


def cmd_audit(args: argparse.Namespace) -> int:
    if (args.booking_uid is None) == (args.form is None):
        raise UsageError("audit: give either a booking uid or --form FORM_ID")
    if args.form is not None:
        if not FORM_ID_PATTERN.fullmatch(args.form):
            raise UsageError("audit: --form must be a routing form id (1-64 letters, digits or hyphens)")
        return ops.form_timeline(ops.resolve_target(args), args.form)
    return ops.audit_timeline(ops.resolve_target(args), args.booking_uid)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except UsageError as exc:
        print(f"calehr: {exc}", file=sys.stderr)
        return 2
    except ops.OpsError as exc:
        print(f"calehr: {exc}", file=sys.stderr)
        return 1
    except (BotoCoreError, ClientError) as exc:
        print(f"calehr: AWS call failed ({type(exc).__name__}: {exc})", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
