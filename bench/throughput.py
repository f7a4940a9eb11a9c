"""End-to-end throughput: N signed webhooks through the local stack vs the FHIR server's raw write rate.

For each worker count (1, 2) a fresh `devstack.stack.LocalStack` (moto server, the Medplum FHIR
engine in node, the local API, `workers` queue pollers) is started, then:

1. warm-up: a few webhooks end to end (imports, clients, caches); the Appointment and Patient the
   bridge wrote become the templates for step 2;
2. raw: the same HTTP client library drives the same FHIR server directly, `workers` threads, N
   pairs of conditional creates (`If-None-Exist`) — a Patient, then an Appointment pointing at it;
3. the FHIR server is reset (and the Practitioner re-seeded, handler caches cleared), then N distinct
   signed webhooks (own uid, iCalUID, attendee e-mail) are POSTed over HTTP by one client thread as fast
   as the local API accepts them.

Events/s = N / (first POST → last Appointment written). Latency per webhook = POST sent → the
sync's `POST /Appointment` answered 201 (one clock: everything but node runs in this process).
Where the time goes is measured by wrapping, in this script only, the two handlers, the sync's
record handler, botocore's `_make_api_call` (every AWS call) and `httpx.Client.send` (every EHR
call); product code is not modified.

Caveat: on this machine the whole Python side (moto, the local API, the pollers and this client)
shares one GIL, and node runs the FHIR engine on the second core.

    python -m bench.throughput [--n 200] [--workers 1 2]
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
    clear_handler_caches,
    compact,
    fixture,
    percentile,
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
    done: dict[str, float] = field(default_factory=dict)  # message id → record handler returned
    written: dict[str, float] = field(default_factory=dict)  # message id → POST /Appointment answered
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
            end = time.perf_counter()
            _context.message_id = None
            with recorder.lock:
                recorder.done[record.message_id] = end
                recorder.record_seconds.append(end - start)

    def make_api_call(self: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
        start = time.perf_counter()
        try:
            return original_api_call(self, operation_name, api_params)
        finally:
            if _stage() != "bench":  # the bench's own scans are not the bridge's
                name = f"aws {self.meta.service_model.service_name} {operation_name}"
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
        message_id = getattr(_context, "message_id", None)
        if message_id and request.method == "POST" and resource == "Appointment" and response.status_code < 300:
            with recorder.lock:
                recorder.written.setdefault(message_id, end)
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


def _raw_writes(fhir_base: str, n: int, concurrency: int, run: str) -> dict[str, Any]:
    """N x (conditional create Patient, conditional create Appointment) with `concurrency` threads."""
    appointment_template, patient_template = _templates(fhir_base)
    client = httpx.Client(
        base_url=fhir_base.rstrip("/") + "/",
        headers={"Accept": FHIR_JSON, "User-Agent": "cal-ehr-bridge-bench/0.1"},
        timeout=httpx.Timeout(10.0, connect=5.0),
        limits=httpx.Limits(max_connections=10, max_keepalive_connections=5),
        trust_env=False,
    )

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

    def one(index: int) -> float:
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
        create(appointment)
        return time.perf_counter() - start

    try:
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            latencies = list(pool.map(one, range(n)))
        elapsed = time.perf_counter() - start
    finally:
        client.close()
    return {
        "n": n,
        "concurrency": concurrency,
        "seconds": round(elapsed, 3),
        "events_per_s": round(n / elapsed, 2),
        "pair_latency_ms": summary_ms(latencies),
        "fhir_requests_per_event": 2,
    }


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
    clear_handler_caches()


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
        ("idempotency", resources.idempotency_table),
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


def run_config(n: int, workers: int, timeout: float) -> dict[str, Any]:
    from devstack.stack import LocalStack  # noqa: PLC0415

    recorder = Recorder()
    sink = StageSink(recorder)
    saved_stdout = sys.stdout
    run = f"{workers}{time.time_ns() % 10**8:08d}"
    stack = LocalStack(workers=workers)
    _context.stage = "bench"
    with instrumented(recorder):
        stack.start()
        try:
            from shared.observability import logger  # noqa: PLC0415

            handler = logger.registered_handler
            assert stack.api and stack.fhir and stack.resources
            if hasattr(handler, "setStream"):
                handler.setStream(sink)
            sys.stdout = sink
            clear_handler_caches()
            url, secret = stack.api.url, stack.resources.webhook_secret
            # 1. warm-up through the whole stack
            warm = _bookings(WARMUP_EVENTS, f"w{run}")
            _send_webhooks(url, secret, warm, recorder)
            if not _wait_for(lambda: len(recorder.written) >= WARMUP_EVENTS, 60):
                raise RuntimeError(f"warm-up webhooks were not written to FHIR: {stack.fhir.stderr_tail}")
            # 2. raw writes to the same FHIR server
            raw = _raw_writes(stack.fhir.base_url, n, workers, run)
            # 3. the bridge
            _reset_fhir(stack)
            recorder.reset()
            bookings = _bookings(n, f"b{run}")
            start = time.perf_counter()
            _send_webhooks(url, secret, bookings, recorder)
            sent_seconds = time.perf_counter() - start
            finished = _wait_for(lambda: len(recorder.written) >= n, timeout)
            end = max(recorder.written.values(), default=time.perf_counter())
            time.sleep(0.3)  # let the last batch's deletes and logs land
            with httpx.Client(trust_env=False, timeout=10) as client:
                in_fhir = len(
                    client.get(f"{stack.fhir.base_url}/Appointment", params={"_count": str(n + 50)}).json().get("entry")
                    or []
                )
            item_sizes = _item_sizes(stack.resources)
        finally:
            sys.stdout = saved_stdout
            if stack.resources:  # moto's backends are process-wide: the next stack must start empty
                httpx.post(f"{stack.resources.endpoint}/moto-api/reset", timeout=10, trust_env=False)
            stack.stop()
    result = _summarise(recorder, raw, n, workers, start, end, sent_seconds, finished, in_fhir)
    result["dynamodb_item_bytes"] = item_sizes
    return result


def _summarise(
    recorder: Recorder,
    raw: dict[str, Any],
    n: int,
    workers: int,
    start: float,
    end: float,
    sent_seconds: float,
    finished: bool,
    in_fhir: int,
) -> dict[str, Any]:
    elapsed = end - start
    rate = len(recorder.written) / elapsed if elapsed > 0 else 0.0
    latencies, queue_waits = [], []
    for message_id, uid in recorder.message_uid.items():
        if message_id in recorder.written and uid in recorder.posted:
            latencies.append(recorder.written[message_id] - recorder.posted[uid])
        if message_id in recorder.picked and message_id in recorder.enqueued:
            queue_waits.append(recorder.picked[message_id] - recorder.enqueued[message_id])
    post_rtt = [recorder.answered[uid] - recorder.posted[uid] for uid in recorder.answered]
    events = max(1, len(recorder.written))
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
    share = rate / raw["events_per_s"] if raw["events_per_s"] else 0.0
    ehr_ms = sum(sum(v) for (stage, name), v in recorder.calls.items() if stage == "sync" and name.startswith("ehr"))
    own_ms = (sync_seconds - sync_calls) / events * 1000
    ceiling = workers * 1000 / (ehr_ms / events * 1000 + own_ms) if ehr_ms else 0.0
    return {
        "workers": workers,
        "n": n,
        "finished": finished,
        "written": len(recorder.written),
        "appointments_in_fhir": in_fhir,
        "post_status": {str(k): v for k, v in recorder.post_status.items()},
        "send_seconds": round(sent_seconds, 3),
        "seconds": round(elapsed, 3),
        "events_per_s": round(rate, 2),
        "raw": raw,
        "share_of_raw": round(share, 3),
        "met": share >= TARGET_SHARE,
        "ceiling_without_aws_events_per_s": round(ceiling, 1),
        "ceiling_share_of_raw": round(ceiling / raw["events_per_s"], 3) if raw["events_per_s"] else 0.0,
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


def _print(result: dict[str, Any]) -> None:
    workers, raw = result["workers"], result["raw"]
    print(
        f"\n=== {workers} sync worker(s): {result['written']}/{result['n']} Appointments written "
        f"({result['appointments_in_fhir']} in FHIR), POST statuses {result['post_status']}"
    )
    table(
        ["path", "events/s", "p50 ms", "p95 ms", "FHIR requests/event"],
        [
            [
                f"bridge (HTTP → ingest → SQS → sync → FHIR), {workers} worker(s)",
                result["events_per_s"],
                result["latency_ms"].get("p50", "-"),
                result["latency_ms"].get("p95", "-"),
                round(sum(c["per_event"] for k, c in result["calls"].items() if k.startswith("sync: ehr")), 2),
            ],
            [
                f"raw conditional creates (Patient + Appointment), {raw['concurrency']} thread(s)",
                raw["events_per_s"],
                raw["pair_latency_ms"]["p50"],
                raw["pair_latency_ms"]["p95"],
                raw["fhir_requests_per_event"],
            ],
        ],
    )
    print(
        f"bridge / raw = {result['share_of_raw'] * 100:.0f}%   target >= {TARGET_SHARE * 100:.0f}%   "
        f"{verdict(result['met'])}   (latency = POST sent → POST /Appointment answered; "
        f"the {result['n']} POSTs took {result['send_seconds']:.1f} s to send)"
    )
    table(
        ["stage", "n", "mean ms", "p50 ms", "p95 ms"],
        [
            [name, s.get("n", 0), s.get("mean", "-"), s.get("p50", "-"), s.get("p95", "-")]
            for name, s in result["stages_ms"].items()
        ],
        title="Per stage:",
    )
    table(
        ["busy time per event", "ms"],
        [[name, value] for name, value in result["per_event_ms"].items()],
        title=f"Where the handlers' time goes (mean batch size {result['batches']['mean_size']}):",
    )
    table(
        ["call (stage: kind)", "per event", "mean ms", "p95 ms", "ms/event"],
        [[name, c["per_event"], c["mean_ms"], c["p95_ms"], c["ms_per_event"]] for name, c in result["calls"].items()],
        title="Calls made per event:",
    )
    print(
        f"if DynamoDB/SQS calls cost nothing (sync = EHR calls + own work only): "
        f"{result['ceiling_without_aws_events_per_s']} events/s = "
        f"{result['ceiling_share_of_raw'] * 100:.0f}% of raw"
    )
    print(f"handler stdout bytes per event: {result['log_bytes_per_event']}")
    print(f"DynamoDB mean item bytes (table: key prefix): {result['dynamodb_item_bytes']}")


def run(n: int = 200, workers: tuple[int, ...] = (1, 2), timeout: float = 120.0) -> dict[str, Any]:
    print(f"Throughput — {n} signed webhooks per configuration through the local stack (127.0.0.1)")
    configs = []
    for count in workers:
        result = run_config(n, count, timeout)
        _print(result)
        configs.append(result)
    best = max(configs, key=lambda c: c["share_of_raw"])
    return {
        "n": n,
        "target_share": TARGET_SHARE,
        "configs": configs,
        "met": any(c["met"] for c in configs),
        "best_share": best["share_of_raw"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.throughput", description="End-to-end throughput vs raw FHIR")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the last Appointment")
    args = parser.parse_args(argv)
    write_result(NAME, run(n=args.n, workers=tuple(args.workers), timeout=args.timeout))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
