"""The local side of the CLI: run the bridge on this machine, send webhooks, show Appointments.

calehr dev                      the demo: start everything, send the demo bookings, show the result
calehr dev --config my.yaml     the same with a clinic's own mapping (no demo bookings)
calehr serve                    the local stack, endpoints printed as one JSON line (tests, scripts)
calehr send DIR|FILE|-          sign and POST webhook bodies like Cal.com does
calehr appointments             the bridge's Appointments in a FHIR server
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx

from cli.errors import CliError, UsageError
from cli.output import Output
from cli.target import STACK_FILE, local_target
from shared.calcom.signature import sign

DEMO_DIR = Path(__file__).resolve().parent.parent / "devstack" / "demo"
DEMO_CONFIG = DEMO_DIR / "clinic.yaml"
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
FIXTURES_DIR = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "calcom"
DEMO_BODIES = (*(DEMO_DIR / n for n in DEMO_INTAKE), *(FIXTURES_DIR / n for n in DEMO_BOOKINGS))
DEMO_FORM_ID = "7c1e9a52-0d4b-4c3e-9f8a-2b6d1e0f5a37"


# -- send -----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Body:
    name: str
    data: bytes


def compact_body(path: Path, *, raw: bool = False) -> bytes:
    """The body Cal.com would send for a fixture file: compact JSON, UTF-8, not ASCII-escaped."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: cannot be read ({exc.strerror})") from None
    return _compact(str(path), data, raw=raw)


def _compact(name: str, data: bytes, *, raw: bool) -> bytes:
    if raw:
        return data
    try:
        document = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UsageError(f"{name}: not valid JSON (use --raw to send it as it is)") from None
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def bodies(paths: list[str], *, raw: bool, stdin: Any = None) -> list[Body]:
    """Files in the order given; a folder's `*.json` files in name order; `-` one body from stdin."""
    found: list[Body] = []
    for item in paths:
        if item == "-":
            stream = stdin if stdin is not None else sys.stdin.buffer
            found.append(Body("-", _compact("stdin", stream.read(), raw=raw)))
            continue
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix == ".json")
            if not files:
                raise UsageError(f"{path}: no .json files in this folder")
            found.extend(Body(str(p), compact_body(p, raw=raw)) for p in files)
        else:
            found.append(Body(str(path), compact_body(path, raw=raw)))
    return found


def post_webhook(url: str, secret: str, body: bytes, client: httpx.Client | None = None) -> httpx.Response:
    headers = {"Content-Type": "application/json", "X-Cal-Signature-256": sign(secret, body)}
    if client is not None:
        return client.post(url, content=body, headers=headers)
    return httpx.post(url, content=body, headers=headers, timeout=30, trust_env=False)


def send(out: Output, items: list[Body], *, url: str, secret: str) -> int:
    """POST each body signed like Cal.com; 1 if any was not delivered or not accepted (≥ 300)."""
    results: list[dict[str, Any]] = []
    with httpx.Client(timeout=30, trust_env=False) as client, out.progress("send", total=len(items)) as progress:
        for item in items:
            try:
                response = post_webhook(url, secret, item.data, client)
            except httpx.HTTPError as exc:
                results.append({"file": item.name, "status": None, "response": f"not delivered ({type(exc).__name__})"})
            else:
                try:
                    answer: Any = response.json()
                except ValueError:
                    answer = response.text[:500]
                results.append({"file": item.name, "status": response.status_code, "response": answer})
            progress.advance()
    rows = [
        {
            "file": r["file"],
            "status": str(r["status"] or "-"),
            "response": r["response"].get("status", "") if isinstance(r["response"], dict) else r["response"],
            "detail": json.dumps(r["response"]) if isinstance(r["response"], dict) else "",
        }
        for r in results
    ]
    out.table(rows, ["file", "status", "response", "detail"], data=results)
    failed = [r for r in results if not r["status"] or r["status"] >= 300]
    if failed:
        out.note(f"{len(failed)} of {len(results)} not accepted")
        return 1
    return 0


def local_endpoint(stack_file: Path) -> tuple[str, str]:
    """The webhook URL and secret of the running local stack."""
    target = local_target(stack_file)
    target.ensure_running()
    url, secret = target.values.get("webhook_url"), target.values.get("webhook_secret")
    if not url or not secret:
        raise CliError(f"{stack_file}: has no webhook_url/webhook_secret")
    return url, secret


# -- appointments ---------------------------------------------------------------------------------
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


APPOINTMENT_COLUMNS = ["id", "status", "start (UTC)", "type", "reason", "booking uids", "participants"]


def print_table(rows: list[dict[str, str]], out: TextIO | None = None, columns: list[str] | None = None) -> None:
    """The Appointments as a plain text table (the demo walkthrough); `columns` default to the FHIR ones."""
    out = out or sys.stdout
    if not rows:
        print("(no appointments)", file=out)
        return
    columns = columns or APPOINTMENT_COLUMNS
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns).rstrip(), file=out)
    print("  ".join("-" * widths[c] for c in columns), file=out)
    for row in rows:
        print("  ".join(row[c].ljust(widths[c]) for c in columns).rstrip(), file=out)


# -- dev / serve ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StackOptions:
    config: Path = DEMO_CONFIG
    seed: list[Path] | None = None
    fhir: str | None = None
    fhir_auth: Path | None = None
    ehr_profile: str = "generic"
    state_dir: Path | None = None
    capture: Path | None = None
    workers: int = 1
    api_port: int = 0
    fhir_port: int = 0
    secret: str | None = None
    #: `fhir` (the local FHIR server) or `hl7v2` (SIU over MLLP to the local interface engine).
    ehr: str = "fhir"
    #: Run the misbehaving event source (devstack/chaos.py) with these settings.
    chaos: Any = None
    #: Seconds between runs of the availability function (busy feeds); None: on demand only.
    availability_interval: float | None = None

    @property
    def is_demo(self) -> bool:
        return self.config.resolve() == DEMO_CONFIG.resolve() and self.fhir is None


def build_stack(options: StackOptions) -> Any:
    """A `LocalStack` for these options, after checking the files it needs (one-line errors)."""
    from cli.doctor import secret_document_file  # noqa: PLC0415
    from devstack.stack import LocalStack, read_seed  # noqa: PLC0415 - heavy imports only when a stack runs
    from shared.clinic.source import load_config  # noqa: PLC0415

    load_config(f"file:{options.config}")  # ConfigError lists every problem before anything starts
    for path in options.seed or []:
        read_seed(path)
    if options.fhir_auth is not None and options.fhir is None:
        raise UsageError("--fhir-auth needs --fhir URL (the local FHIR server takes no auth)")
    if options.fhir is not None and not options.fhir.startswith(("http://", "https://")):
        raise UsageError("--fhir must be an http(s) URL")
    return LocalStack(
        clinic_config=options.config,
        workers=options.workers,
        api_port=options.api_port,
        fhir_port=options.fhir_port,
        webhook_secret=options.secret,
        seed=options.seed,
        ehr_base_url=options.fhir,
        ehr_auth=secret_document_file(options.fhir_auth) if options.fhir_auth else None,
        ehr_profile=options.ehr_profile,
        state_dir=options.state_dir,
        capture_dir=options.capture,
        ehr=options.ehr,
        chaos=options.chaos,
        availability_interval=options.availability_interval,
    )


def wait_for_signal(*, poll_seconds: float = 0.2) -> None:
    """Block until SIGINT or SIGTERM. A timed wait: Python runs a signal's handler only in the main thread,
    between bytecodes, and a signal the kernel hands to another thread does not wake a main thread blocked
    in an untimed wait, so `Event.wait()` alone can sleep through Ctrl-C forever."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(poll_seconds):
        pass


@contextmanager
def running(stack: Any, stack_file: Path | None) -> Iterator[Any]:
    """The started stack; its description file exists exactly while it runs."""
    with stack:
        if stack_file is not None:
            stack.write_description(stack_file)
        try:
            yield stack
        finally:
            if stack_file is not None:
                stack_file.unlink(missing_ok=True)


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


def _handler_logs_to(stream: TextIO) -> None:
    """Point the handlers' logger at `stream`: it may have been created (with the console as its stream)
    before stdout was redirected, as soon as anything imported `shared.observability`."""
    from shared.observability import logger  # noqa: PLC0415

    for handler in logger.handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(stream)


def dev(options: StackOptions, *, demo: bool, log_file: Path, stack_file: Path, as_json: bool) -> int:
    """Run the bridge locally; with the demo mapping, send the demo bookings and show the result."""
    stack = build_stack(options)
    # The handlers' structured logs and EMF metrics go to a file; the console shows the walkthrough.
    log_file.parent.mkdir(parents=True, exist_ok=True)
    console = sys.stdout
    say: Callable[..., None] = lambda *parts: print(*parts, file=console, flush=True)  # noqa: E731
    if options.ehr == "hl7v2" and not as_json:
        from devstack.mllp_listener import stream_line  # noqa: PLC0415

        stack.on_siu = lambda record: say(stream_line(record))
    with log_file.open("a", encoding="utf-8") as log:
        sys.stdout = log
        _handler_logs_to(log)
        try:
            if not as_json:
                say("Starting the local bridge (moto, FHIR server, local API, sync poller, audit archive)...")
                say(f"Handler logs and metrics: {log_file}")
            with running(stack, stack_file):
                info = stack.describe()
                if as_json:
                    say(json.dumps(info))
                else:
                    _walkthrough(stack, info, options, demo=demo, say=say, console=console)
                wait_for_signal()
        finally:
            sys.stdout = console
    if not as_json:
        say("Stopped." + (f" State kept in {options.state_dir}." if options.state_dir else ""))
    return 0


def _walkthrough(
    stack: Any, info: dict[str, Any], options: StackOptions, *, demo: bool, say: Callable[..., None], console: TextIO
) -> None:
    say(f"\n  Clinic mapping  {options.config}")
    say(f"  Webhook URL     {info['webhook_url']}")
    say(f"  Webhook secret  {info['webhook_secret']}")
    say(f"  FHIR base URL   {info['fhir_base_url']}" + ("  (your EHR)" if options.fhir else ""))
    if "mllp_url" in info:
        say(f"  HL7 v2 engine   {info['mllp_url']}  (SIU over MLLP; every message validated with hl7apy)")
    say(f"  AWS (moto)      {info['aws_endpoint']}")
    if info.get("audit_archive_bucket"):
        say(f"  Audit archive   s3://{info['audit_archive_bucket']} (Object Lock, COMPLIANCE)")
    if options.state_dir:
        restored = ", ".join(f"{k} {v}" for k, v in stack.restored.items() if v) or "nothing yet"
        say(f"  State           {options.state_dir} (restored: {restored})")
    if options.capture:
        say(f"  Capture         {options.capture} (every received body; holds patient data)")
    if options.chaos is not None:
        chaos = options.chaos
        say(
            f"  Chaos           {chaos.workers} workers at once per batch, duplicates {chaos.duplicate:.0%}, "
            f"kills {chaos.kill:.0%}, delays up to {chaos.max_delay_ms} ms (seed {chaos.seed})"
        )
    say("")
    if demo and options.is_demo:
        say("Sending the demo bookings, signed like Cal.com...")
        for path in DEMO_BODIES:
            response = post_webhook(info["webhook_url"], info["webhook_secret"], compact_body(path))
            say(f"  {path.name:42} {response.status_code} {response.json().get('status', response.text)}")
        drained = _queue_drained(stack)
        pending = "" if drained else " (queue not yet drained)"
        if options.ehr == "hl7v2":
            from devstack.mllp_listener import ENGINE_COLUMNS, engine_rows  # noqa: PLC0415

            say(f"\nAppointments the interface engine holds{pending}:\n")
            print_table(engine_rows(stack.mllp) if stack.mllp else [], out=console, columns=list(ENGINE_COLUMNS))
        else:
            say(f"\nAppointments in the FHIR server{pending}:\n")
            print_table(appointment_rows(info["fhir_base_url"]), out=console)
        say(
            "\nThe general visit on 2025-06-19 was joined to the routing form its patient answered 6 minutes"
            " before booking\n(Returning patient -> FOLLOWUP; symptom Headache -> coded reasonCode). The form's"
            f" audit trail:\n  calehr audit --form {DEMO_FORM_ID} --local"
        )
        if options.ehr == "fhir":
            ehr_first_demo(stack, info, say=say)
    say(
        "\nServing. Send webhook bodies (a file, a folder in name order, or - for stdin) with:\n"
        "  calehr send FILE|DIR --local\n"
        "Then: calehr appointments --local, calehr review list --local, calehr audit <booking uid> --local,\n"
        "or browse everything: calehr console --local (http://127.0.0.1:8788/).\n"
        "Press Ctrl-C to stop."
    )


def ehr_first_demo(stack: Any, info: dict[str, Any], *, say: Callable[..., None]) -> None:
    """Appointments made first in the EHR: the practitioner's busy feed, and a Cal.com booking that
    overlaps one of them parked for review instead of double-booking (devstack/ehr_first.py)."""
    from datetime import UTC, datetime  # noqa: PLC0415

    from devstack.ehr_first import DEMO_NPI, overlapping_booking, plant_ehr_first  # noqa: PLC0415
    from functions.availability.handler import run as availability_run  # noqa: PLC0415
    from shared.stores.feeds import FeedStore  # noqa: PLC0415
    from shared.stores.review import ReviewStore  # noqa: PLC0415

    planted = plant_ehr_first(info["fhir_base_url"], now=datetime.now(UTC))
    availability_run({"full": True})
    store = FeedStore(info["availability_table"], client=stack.resources.client("dynamodb"))
    feed_id = f"practitioner:npi:{DEMO_NPI}"
    feed = store.feed(feed_id)
    if feed is None:
        say("\nThe busy feed was not built (see the log file).")
        return
    say("\nAppointments made first in the EHR (a phone booking, a cancelled one) block Cal.com time through the")
    say(f"practitioner's busy feed (Cal.com: Apps > ICS Feed, or POST /v2/calendars/ics-feed/save):\n  {feed.name}")
    say(f"  {info['feed_base_url']}{feed.token}.ics")
    for interval in sorted(store.busy(feed_id)):
        say(f"  busy {interval.start:%Y-%m-%d %H:%M}-{interval.end:%H:%M} UTC ({interval.status_class})")
    response = post_webhook(info["webhook_url"], info["webhook_secret"], overlapping_booking(planted))
    _queue_drained(stack)
    parked = [
        item
        for item in ReviewStore(info["review_table"], client=stack.resources.client("dynamodb")).list_items()
        if item.get("reason") == "ehr_conflict"
    ]
    outcome = "parked for review as ehr_conflict" if parked else "not parked (see the log file)"
    say(
        f"\nA Cal.com booking at {planted.start:%Y-%m-%d} 15:30 UTC for the same practitioner"
        f" ({response.status_code}) overlaps it: {outcome}"
        " instead of double-booking.\n  calehr review list --local;  calehr availability feed-url --practitioner"
        f" {DEMO_NPI} --local"
    )


def serve(options: StackOptions, *, stack_file: Path | None) -> int:
    """The local stack with its endpoints as one JSON line on stdout, until SIGTERM/SIGINT."""
    stack = build_stack(options)
    with running(stack, stack_file):
        print(json.dumps(stack.describe()), flush=True)
        wait_for_signal()
    return 0


DEFAULT_STACK_FILE = STACK_FILE
