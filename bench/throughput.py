"""End-to-end throughput: signed webhooks through the local stack vs the FHIR server's raw rate.

One `devstack.stack.LocalStack` per worker count (moto server, the Medplum FHIR engine in node, the
local API, `workers` queue pollers). After a warm-up, for each EHR latency (0, 50 and 150 ms per FHIR
call, set on the FHIR server with `POST /$latency`, so the bridge sees what a cloud EHR costs it):

1. raw, new bookings: the same HTTP client library drives the FHIR server directly, `workers`
   threads, N pairs of conditional creates (`If-None-Exist`): a Patient, then an Appointment;
2. raw, updates: for each of those Appointments a search by its identifier, then a `PUT` with
   `If-Match` (the least a careful client does to move an appointment);
3. the FHIR server is reset (Practitioner re-seeded, handler caches cleared), then N distinct signed
   BOOKING_CREATED webhooks are POSTed over HTTP by one client thread as fast as the API takes them;
4. once all are applied, N BOOKING_RESCHEDULED webhooks for those bookings (new uid, same iCalUID).

Events/s = N / (first POST sent → last record handler returned successfully); the ratio is bridge
events/s ÷ raw events/s for the same kind of event. Latency per webhook = POST sent → its record
handler returned. Calls are counted by wrapping, in this script only, the two handlers, the sync's
record handler, botocore's `_make_api_call` (every AWS call) and `httpx.Client.send` (every EHR call);
product code is not modified.

Caveat: on this machine the whole Python side (moto, the local API, the pollers and this client)
shares one GIL, and node runs the FHIR engine on the second core.

    python -m bench.throughput [--n 200] [--n-latency 30] [--latencies 0 50 150] [--workers 1]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import json
import statistics
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import botocore.client
import httpx

from bench._common import (
    CountingSink,
    compact,
    fixture,
    percentile,
    reset_handlers,
    summary_ms,
    table,
    verdict,
    write_result,
)

NAME = "throughput"
TARGET_SHARE = 0.8
WARMUP_EVENTS = 3
FHIR_JSON = "application/fhir+json"

_context = threading.local()


def _stage() -> str:
    return str(getattr(_context, "stage", None) or "poller/other")


@dataclass
class Recorder:
    """Timestamps (perf_counter seconds) and durations collected by the wrappers; thread-safe."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    posted: dict[str, float] = field(default_factory=dict)  # uid → POST sent
    answered: dict[str, float] = field(default_factory=dict)  # uid → POST answered (202)
    post_status: dict[int, int] = field(default_factory=dict)
    ingest_seconds: list[float] = field(default_factory=list)
    message_uid: dict[str, str] = field(default_factory=dict)  # SQS message id → uid
    enqueued: dict[str, float] = field(default_factory=dict)  # message id → ingest handler returned
    picked: dict[str, float] = field(default_factory=dict)  # message id → sync batch started
    done: dict[str, float] = field(default_factory=dict)  # message id → record handler succeeded
    record_seconds: list[float] = field(default_factory=list)
    batches: list[tuple[int, float]] = field(default_factory=list)
    calls: dict[tuple[str, str], list[float]] = field(default_factory=lambda: defaultdict(list))
    log_bytes: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def reset(self) -> None:
        """Forget the warm-up (keeps the lock the wrappers hold a reference to)."""
        fresh = Recorder()
        with self.lock:
            for name, value in vars(fresh).items():
                if name != "lock":
                    setattr(self, name, value)

    def call(self, stage: str, name: str, seconds: float) -> None:
        with self.lock:
            self.calls[(stage, name)].append(seconds)


class StageSink(CountingSink):
    """Counts the handlers' stdout bytes per stage (ingest / sync), from the writing thread's stage."""

    def __init__(self, recorder: Recorder) -> None:
        super().__init__()
        self._recorder = recorder

    def write(self, s: str) -> int:
        with self._recorder.lock:
            self._recorder.log_bytes[_stage()] += len(s.encode("utf-8"))
        return super().write(s)


# --- instrumentation (this script only) ---------------------------------------------------------


def _dynamodb_target(params: dict[str, Any]) -> str:
    """` <table role> <key prefix>` of a DynamoDB item call (e.g. ` state lineage#`); names only, no values."""
    table = str(params.get("TableName") or "")
    if not table:
        items = params.get("TransactItems") or []
        kinds = sorted({next(iter(item)) for item in items if isinstance(item, dict) and item})
        return f" ({len(items)} items: {', '.join(kinds)})" if items else ""
    key = params.get("Key") or params.get("Item") or {}
    first: Any = next(iter(key.values()), {}) if isinstance(key, dict) else {}
    value = next(iter(first.values()), "") if isinstance(first, dict) else ""
    prefix = value.split("#", 1)[0] + "#" if isinstance(value, str) and "#" in value else "item"
    return f" {table.rsplit('-', 1)[-1]} {prefix}"


@contextlib.contextmanager
def instrumented(recorder: Recorder) -> Iterator[None]:
    ingest: Any = importlib.import_module("functions.ingest.handler")
    sync: Any = importlib.import_module("functions.sync.handler")
    botocore_client: Any = botocore.client.BaseClient
    originals: dict[tuple[Any, str], Any] = {
        (ingest, "handler"): ingest.handler,
        (sync, "handler"): sync.handler,
        (sync, "record_handler"): sync.record_handler,
        (botocore_client, "_make_api_call"): botocore_client._make_api_call,
        (httpx.Client, "send"): httpx.Client.send,
    }
    original_ingest, original_sync = ingest.handler, sync.handler
    original_record = sync.record_handler
    original_api_call = botocore_client._make_api_call
    original_send = httpx.Client.send

    def ingest_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        _context.stage = "ingest"
        start = time.perf_counter()
        try:
            response: dict[str, Any] = original_ingest(event, context)
        finally:
            end = time.perf_counter()
            _context.stage = None
        uid = json.loads(event["body"])["payload"]["uid"]
        message_id = json.loads(response["body"]).get("delivery_id")
        with recorder.lock:
            recorder.ingest_seconds.append(end - start)
            if message_id:
                recorder.message_uid[message_id] = uid
                recorder.enqueued[message_id] = end
        return response

    def sync_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        start = time.perf_counter()
        with recorder.lock:
            for record in event["Records"]:
                recorder.picked.setdefault(record["messageId"], start)
        _context.stage = "sync"
        try:
            response: dict[str, Any] = original_sync(event, context)
        finally:
            _context.stage = None
            with recorder.lock:
                recorder.batches.append((len(event["Records"]), time.perf_counter() - start))
        return response

    def record_handler(record: Any) -> None:
        _context.message_id = record.message_id
        start = time.perf_counter()
        try:
            original_record(record)
        finally:
            _context.message_id = None
        end = time.perf_counter()  # only a record that succeeded is done (a retried one comes back)
        with recorder.lock:
            recorder.done[record.message_id] = end
            recorder.record_seconds.append(end - start)

    def make_api_call(self: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
        start = time.perf_counter()
        try:
            return original_api_call(self, operation_name, api_params)
        finally:
            if _stage() != "bench":  # the bench's own scans are not the bridge's
                name = f"aws {self.meta.service_model.service_name} {operation_name}{_dynamodb_target(api_params)}"
                recorder.call(_stage(), name, time.perf_counter() - start)

    def send(self: httpx.Client, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        start = time.perf_counter()
        response = original_send(self, request, **kwargs)
        end = time.perf_counter()
        resource = request.url.path.strip("/").split("/")[0] or "/"
        kind = "search" if request.method == "GET" and "?" in str(request.url) else request.method
        stage = _stage()
        if stage in ("ingest", "sync"):  # the bench's own client calls are not the bridge's
            recorder.call(stage, f"ehr {kind} {resource}", end - start)
        return response

    try:
        ingest.handler = ingest_handler
        sync.handler = sync_handler
        sync.record_handler = record_handler
        botocore_client._make_api_call = make_api_call
        httpx.Client.send = send  # type: ignore[method-assign]
        yield
    finally:
        for (owner, name), value in originals.items():
            setattr(owner, name, value)


# --- the two workloads --------------------------------------------------------------------------


def _bookings(n: int, run: str) -> list[tuple[str, bytes]]:
    """N distinct BOOKING_CREATED bodies (own uid, iCalUID, booking id, attendee e-mail)."""
    template = fixture("booking_created.json")
    bodies = []
    for index in range(n):
        document = copy.deepcopy(template)
        payload = document["payload"]
        uid = f"tp{run}{index:05d}"
        payload["uid"] = uid
        payload["iCalUID"] = f"{uid}@Cal.com"
        payload["bookingId"] = 700000 + index
        email = f"tp.{run}.{index}@example.com"
        payload["attendees"][0]["email"] = email
        payload["responses"]["email"]["value"] = email
        payload["metadata"]["videoCallUrl"] = f"https://app.cal.com/video/{uid}"
        bodies.append((uid, compact(document)))
    return bodies


def _reschedules(n: int, run: str) -> list[tuple[str, bytes]]:
    """A BOOKING_RESCHEDULED for each booking of `_bookings(n, run)`: new uid, the same iCalUID."""
    template = fixture("booking_rescheduled.json")
    bodies = []
    for index in range(n):
        document = copy.deepcopy(template)
        payload = document["payload"]
        original = f"tp{run}{index:05d}"
        uid = f"rs{run}{index:05d}"
        payload["uid"] = uid
        payload["iCalUID"] = f"{original}@Cal.com"
        payload["rescheduleUid"] = original
        payload["rescheduleId"] = 700000 + index
        payload["bookingId"] = 800000 + index
        email = f"tp.{run}.{index}@example.com"
        for attendee in payload.get("attendees", []):
            attendee["email"] = email
        if isinstance(payload.get("responses", {}).get("email"), dict):
            payload["responses"]["email"]["value"] = email
        if isinstance(payload.get("metadata"), dict):
            payload["metadata"]["videoCallUrl"] = f"https://app.cal.com/video/{uid}"
        bodies.append((uid, compact(document)))
    return bodies


def _send_webhooks(url: str, secret: str, bookings: list[tuple[str, bytes]], recorder: Recorder) -> None:
    from cli.local import post_webhook  # noqa: PLC0415

    with httpx.Client(trust_env=False, timeout=30) as client:
        for uid, body in bookings:
            recorder.posted[uid] = time.perf_counter()
            response = post_webhook(url, secret, body, client)
            recorder.answered[uid] = time.perf_counter()
            recorder.post_status[response.status_code] = recorder.post_status.get(response.status_code, 0) + 1


def _templates(fhir_base: str) -> tuple[dict[str, Any], dict[str, Any]]:
    with httpx.Client(base_url=fhir_base, trust_env=False, timeout=10) as client:
        appointment = client.get("Appointment", params={"_count": "1"}).json()["entry"][0]["resource"]
        patient = client.get("Patient", params={"_count": "1"}).json()["entry"][0]["resource"]
    for resource in (appointment, patient):
        resource.pop("id", None)
        meta = resource.pop("meta", {})
        if meta.get("tag"):
            resource["meta"] = {"tag": meta["tag"]}
    return appointment, patient


def _raw_client(fhir_base: str) -> httpx.Client:
    return httpx.Client(
        base_url=fhir_base.rstrip("/") + "/",
        headers={"Accept": FHIR_JSON, "User-Agent": "cal-ehr-bridge-bench/0.1"},
        timeout=httpx.Timeout(30.0, connect=5.0),
        limits=httpx.Limits(max_connections=10, max_keepalive_connections=5),
        trust_env=False,
    )


def _pool(
    work: Callable[[int], tuple[float, float]], n: int, concurrency: int
) -> tuple[float, list[tuple[float, float]]]:
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        spans = list(pool.map(work, range(n)))
    return time.perf_counter() - start, spans


@dataclass(frozen=True)
class RawWrites:
    """The EHR's own time for the bridge's writes: (start, end) perf_counter seconds of each raw event."""

    new_booking: list[tuple[float, float]]
    update: list[tuple[float, float]]
    new_seconds: float
    update_seconds: float


def raw_writes(
    fhir_base: str, templates: tuple[dict[str, Any], dict[str, Any]], n: int, concurrency: int, run: str
) -> RawWrites:
    """Raw new bookings (conditional create Patient + Appointment), then raw updates (search + PUT If-Match),
    `concurrency` at a time, all started together."""
    appointment_template, patient_template = templates
    client = _raw_client(fhir_base)
    created: dict[int, tuple[str, str]] = {}  # index → (Appointment identifier query, id)

    def create(resource: dict[str, Any]) -> dict[str, Any]:
        identifier = resource["identifier"][0]
        response = client.post(
            resource["resourceType"],
            json=resource,
            headers={
                "Content-Type": FHIR_JSON,
                "If-None-Exist": f"identifier={identifier['system']}|{identifier['value']}",
            },
        )
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def new_booking(index: int) -> tuple[float, float]:
        start = time.perf_counter()
        patient = copy.deepcopy(patient_template)
        for identifier in patient["identifier"]:
            identifier["value"] = f"{identifier['value']}-raw{run}{index}"
        patient["telecom"] = [{"system": "email", "value": f"raw.{run}.{index}@example.com"}]
        patient_id = create(patient)["id"]
        appointment = copy.deepcopy(appointment_template)
        for identifier in appointment["identifier"]:
            identifier["value"] = f"{identifier['value']}-raw{run}{index}"
        for participant in appointment["participant"]:
            if participant.get("actor", {}).get("reference", "").startswith("Patient/"):
                participant["actor"]["reference"] = f"Patient/{patient_id}"
        written = create(appointment)
        first = appointment["identifier"][0]
        created[index] = (f"{first['system']}|{first['value']}", written["id"])
        return start, time.perf_counter()

    def update(index: int) -> tuple[float, float]:
        start = time.perf_counter()
        query, _ = created[index]
        found = client.get("Appointment", params={"identifier": query})
        found.raise_for_status()
        resource = found.json()["entry"][0]["resource"]
        resource["start"], resource["end"] = "2030-01-02T10:00:00Z", "2030-01-02T10:30:00Z"
        response = client.put(
            f"Appointment/{resource['id']}",
            json=resource,
            headers={"Content-Type": FHIR_JSON, "If-Match": f'W/"{resource["meta"]["versionId"]}"'},
        )
        response.raise_for_status()
        return start, time.perf_counter()

    try:
        new_seconds, new_spans = _pool(new_booking, n, concurrency)
        update_seconds, update_spans = _pool(update, n, concurrency)
    finally:
        client.close()
    return RawWrites(new_spans, update_spans, new_seconds, update_seconds)


def _raw(
    fhir_base: str, templates: tuple[dict[str, Any], dict[str, Any]], n: int, concurrency: int, run: str
) -> dict[str, dict[str, Any]]:
    """Raw new bookings (conditional create Patient + Appointment), then raw updates (search + PUT If-Match)."""
    raw = raw_writes(fhir_base, templates, n, concurrency, run)
    figures = {}
    for kind, spans, seconds in (
        ("new_booking", raw.new_booking, raw.new_seconds),
        ("update", raw.update, raw.update_seconds),
    ):
        figures[kind] = {
            "n": n,
            "seconds": round(seconds, 3),
            "events_per_s": round(n / seconds, 2),
            "latency_ms": summary_ms([end - start for start, end in spans]),
            "fhir_requests_per_event": 2,
        }
    return figures


def _wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def _reset_fhir(stack: Any) -> None:
    stack.fhir.reset()
    stack.seed_practitioners()
    reset_handlers()


def _attribute_bytes(value: dict[str, Any]) -> int:
    """DynamoDB's size of one attribute value (approximation of the documented rules)."""
    kind, inner = next(iter(value.items()))
    if kind in ("S", "B"):
        return len(inner.encode("utf-8")) if isinstance(inner, str) else len(inner)
    if kind == "N":
        return (len(inner.strip("-").replace(".", "")) + 1) // 2 + 1
    if kind in ("SS", "NS", "BS"):
        return sum(_attribute_bytes({kind[0]: item}) for item in inner)
    if kind == "M":
        return 3 + sum(len(k.encode("utf-8")) + 1 + _attribute_bytes(v) for k, v in inner.items())
    if kind == "L":
        return 3 + sum(1 + _attribute_bytes(v) for v in inner)
    return 1  # BOOL, NULL


def _item_sizes(resources: Any) -> dict[str, dict[str, float]]:
    """Mean item size per table and key prefix (`lineage#`, `uid#`, ...), for the cost model's WRU/RRU."""
    ddb = resources.client("dynamodb")
    sizes: dict[str, dict[str, list[int]]] = {}
    for role, table_name in (
        ("state", resources.state_table),
        ("audit", resources.audit_table),
        ("review", resources.review_table),
    ):
        for page in ddb.get_paginator("scan").paginate(TableName=table_name):
            for item in page.get("Items", []):
                key = next(iter(item.get("pk", item.get("id", {"S": "item"})).values()))
                prefix = key.split("#", 1)[0] if "#" in key else "item"
                size = sum(len(name.encode("utf-8")) + _attribute_bytes(value) for name, value in item.items())
                sizes.setdefault(role, {}).setdefault(prefix, []).append(size)
    return {
        role: {prefix: round(statistics.fmean(values), 1) for prefix, values in prefixes.items()}
        for role, prefixes in sizes.items()
    }


def _bridge_phase(
    stack: Any, recorder: Recorder, bodies: list[tuple[str, bytes]], raw: dict[str, Any], timeout: float
) -> dict[str, Any]:
    """POST `bodies`, wait until every record handler succeeded, summarise against `raw`."""
    assert stack.api and stack.resources
    recorder.reset()
    start = time.perf_counter()
    _send_webhooks(stack.api.url, stack.resources.webhook_secret, bodies, recorder)
    sent_seconds = time.perf_counter() - start
    n = len(bodies)
    finished = _wait_for(lambda: len(recorder.done) >= n, timeout)
    end = max(recorder.done.values(), default=time.perf_counter())
    time.sleep(0.3)  # let the last batch's deletes and logs land
    return _summarise(recorder, raw, n, start, end, sent_seconds, finished)


def run_config(n_by_latency: dict[int, int], workers: int, timeout: float) -> dict[str, Any]:
    from devstack.stack import LocalStack  # noqa: PLC0415

    recorder = Recorder()
    sink = StageSink(recorder)
    saved_stdout = sys.stdout
    run = f"{workers}{time.time_ns() % 10**7:07d}"
    stack = LocalStack(workers=workers)
    _context.stage = "bench"
    by_latency: dict[str, dict[str, Any]] = {}
    with instrumented(recorder):
        stack.start()
        try:
            from shared.observability import logger  # noqa: PLC0415

            handler = logger.registered_handler
            assert stack.api and stack.fhir and stack.resources
            if hasattr(handler, "setStream"):
                handler.setStream(sink)
            sys.stdout = sink
            reset_handlers()
            # warm-up through the whole stack (imports, clients, caches); its resources are the raw templates
            _send_webhooks(stack.api.url, stack.resources.webhook_secret, _bookings(WARMUP_EVENTS, f"w{run}"), recorder)
            if not _wait_for(lambda: len(recorder.done) >= WARMUP_EVENTS, 60):
                raise RuntimeError(f"warm-up webhooks were not applied: {stack.fhir.stderr_tail}")
            templates = _templates(stack.fhir.base_url)
            for latency, n in n_by_latency.items():
                stack.fhir.set_latency(latency)
                tag = f"{run}l{latency}"
                raw = _raw(stack.fhir.base_url, templates, n, workers, tag)
                _reset_fhir(stack)
                new = _bridge_phase(stack, recorder, _bookings(n, tag), raw["new_booking"], timeout)
                update = _bridge_phase(stack, recorder, _reschedules(n, tag), raw["update"], timeout)
                by_latency[str(latency)] = {"ehr_latency_ms": latency, "new_booking": new, "update": update}
                sys.stdout = saved_stdout
                _print(workers, by_latency[str(latency)])
                sys.stdout = sink
            stack.fhir.set_latency(0)
            item_sizes = _item_sizes(stack.resources)
        finally:
            sys.stdout = saved_stdout
            if stack.resources:  # moto's backends are process-wide: the next stack must start empty
                httpx.post(f"{stack.resources.endpoint}/moto-api/reset", timeout=10, trust_env=False)
            stack.stop()
    return {"workers": workers, "by_latency": by_latency, "dynamodb_item_bytes": item_sizes}


def _summarise(
    recorder: Recorder,
    raw: dict[str, Any],
    n: int,
    start: float,
    end: float,
    sent_seconds: float,
    finished: bool,
) -> dict[str, Any]:
    elapsed = end - start
    done = len(recorder.done)
    rate = done / elapsed if elapsed > 0 else 0.0
    latencies, queue_waits = [], []
    for message_id, uid in recorder.message_uid.items():
        if message_id in recorder.done and uid in recorder.posted:
            latencies.append(recorder.done[message_id] - recorder.posted[uid])
        if message_id in recorder.picked and message_id in recorder.enqueued:
            queue_waits.append(recorder.picked[message_id] - recorder.enqueued[message_id])
    post_rtt = [recorder.answered[uid] - recorder.posted[uid] for uid in recorder.answered]
    events = max(1, done)
    calls = {
        f"{stage}: {name}": {
            "per_event": round(len(values) / events, 2),
            "mean_ms": round(statistics.fmean(values) * 1000, 3),
            "p95_ms": round(percentile([v * 1000 for v in values], 95), 3),
            "ms_per_event": round(sum(values) / events * 1000, 3),
        }
        for (stage, name), values in sorted(recorder.calls.items())
    }
    sync_seconds = sum(seconds for _, seconds in recorder.batches)
    sync_calls = sum(sum(v) for (stage, _), v in recorder.calls.items() if stage == "sync")
    ingest_calls = sum(sum(v) for (stage, _), v in recorder.calls.items() if stage == "ingest")
    ingest_seconds = sum(recorder.ingest_seconds)
    stages = {
        "POST round trip (client)": summary_ms(post_rtt),
        "ingest handler": summary_ms(recorder.ingest_seconds),
        "queue wait (enqueued → sync batch start)": summary_ms(queue_waits),
        "sync: record handler per message": summary_ms(recorder.record_seconds),
    }
    per_event_ms = {
        "ingest handler": ingest_seconds / events * 1000,
        "  of which AWS calls": ingest_calls / events * 1000,
        "  of which the rest (parse, sign check, logs)": (ingest_seconds - ingest_calls) / events * 1000,
        "sync handler (batches)": sync_seconds / events * 1000,
        "  of which EHR + AWS calls": sync_calls / events * 1000,
        "  of which the rest (parse, decide, project, logs)": (sync_seconds - sync_calls) / events * 1000,
    }

    def per_event(prefix: str) -> float:
        return round(sum(c["per_event"] for name, c in calls.items() if name.startswith(prefix)), 2)

    share = rate / raw["events_per_s"] if raw["events_per_s"] else 0.0
    return {
        "n": n,
        "finished": finished,
        "done": done,
        "post_status": {str(k): v for k, v in recorder.post_status.items()},
        "send_seconds": round(sent_seconds, 3),
        "seconds": round(elapsed, 3),
        "events_per_s": round(rate, 2),
        "raw": raw,
        "share_of_raw": round(share, 3),
        "met": share >= TARGET_SHARE,
        "ehr_calls_per_event": per_event("sync: ehr"),
        "ddb_round_trips_per_event": per_event("sync: aws dynamodb "),
        "latency_ms": summary_ms(latencies),
        "stages_ms": stages,
        "per_event_ms": {k: round(v, 3) for k, v in per_event_ms.items()},
        "calls": calls,
        "batches": {
            "count": len(recorder.batches),
            "mean_size": round(statistics.fmean(size for size, _ in recorder.batches), 2) if recorder.batches else 0,
        },
        "log_bytes_per_event": {stage: round(b / events) for stage, b in recorder.log_bytes.items()},
    }


def _print(workers: int, result: dict[str, Any]) -> None:
    latency = result["ehr_latency_ms"]
    print(f"\n=== {workers} sync worker(s), EHR latency {latency} ms per FHIR call")
    rows = []
    for kind in ("new_booking", "update"):
        phase = result[kind]
        raw = phase["raw"]
        rows.append(
            [
                f"{kind}: bridge ({phase['done']}/{phase['n']} applied)",
                phase["events_per_s"],
                phase["latency_ms"].get("p50", "-"),
                phase["latency_ms"].get("p95", "-"),
                phase["ehr_calls_per_event"],
                phase["ddb_round_trips_per_event"],
            ]
        )
        rows.append(
            [
                f"{kind}: raw, {workers} thread(s)",
                raw["events_per_s"],
                raw["latency_ms"]["p50"],
                raw["latency_ms"]["p95"],
                raw["fhir_requests_per_event"],
                "-",
            ]
        )
    table(["path", "events/s", "p50 ms", "p95 ms", "FHIR calls/event", "DynamoDB calls/event"], rows)
    for kind in ("new_booking", "update"):
        phase = result[kind]
        print(
            f"{kind}: bridge / raw = {phase['share_of_raw'] * 100:.0f}%   target >= {TARGET_SHARE * 100:.0f}% "
            f"at 150 ms   {verdict(phase['met']) if latency == 150 else '(reference)'}"
        )
    detail = result["new_booking"]
    table(
        ["call (stage: kind)", "per event", "mean ms", "p95 ms", "ms/event"],
        [[name, c["per_event"], c["mean_ms"], c["p95_ms"], c["ms_per_event"]] for name, c in detail["calls"].items()],
        title="Calls made per new booking:",
    )
    table(
        ["call (stage: kind)", "per event", "mean ms", "p95 ms", "ms/event"],
        [
            [name, c["per_event"], c["mean_ms"], c["p95_ms"], c["ms_per_event"]]
            for name, c in result["update"]["calls"].items()
            if name.startswith("sync")
        ],
        title="Sync calls per update:",
    )
    table(
        ["busy time per new booking", "ms"],
        [[name, value] for name, value in detail["per_event_ms"].items()],
        title=f"Where the handlers' time goes (mean batch size {detail['batches']['mean_size']}):",
    )


LATENCIES = (0, 50, 150)


def run(
    n: int = 200,
    n_latency: int = 30,
    latencies: tuple[int, ...] = LATENCIES,
    workers: tuple[int, ...] = (1,),
    timeout: float = 300.0,
) -> dict[str, Any]:
    n_by_latency = {latency: n if latency == 0 else n_latency for latency in latencies}
    print(f"Throughput — signed webhooks through the local stack (127.0.0.1); N per EHR latency: {n_by_latency}")
    configs = [run_config(n_by_latency, count, timeout) for count in workers]
    first = configs[0]
    at = first["by_latency"]
    at_150 = at.get("150")
    met = bool(at_150 and at_150["new_booking"]["met"] and at_150["update"]["met"])
    return {
        "n_by_latency": {str(k): v for k, v in n_by_latency.items()},
        "target_share": TARGET_SHARE,
        "target_at_ehr_latency_ms": 150,
        "configs": configs,
        "met": met,
        "share_of_raw": {
            latency: {kind: figures[kind]["share_of_raw"] for kind in ("new_booking", "update")}
            for latency, figures in at.items()
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.throughput", description="End-to-end throughput vs raw FHIR")
    parser.add_argument("--n", type=int, default=200, help="webhooks per kind with no EHR latency")
    parser.add_argument("--n-latency", type=int, default=30, help="webhooks per kind at each non-zero latency")
    parser.add_argument("--latencies", type=int, nargs="+", default=list(LATENCIES), help="EHR ms per FHIR call")
    parser.add_argument("--workers", type=int, nargs="+", default=[1])
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for each phase")
    args = parser.parse_args(argv)
    result = run(
        n=args.n,
        n_latency=args.n_latency,
        latencies=tuple(args.latencies),
        workers=tuple(args.workers),
        timeout=args.timeout,
    )
    write_result(NAME, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
