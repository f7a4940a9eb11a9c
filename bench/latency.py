"""Webhook → chart: how long after the bridge receives a webhook the Appointment is readable in the EHR,
next to the EHR's own time for the same writes.

One `devstack.stack.LocalStack` with as many sync pollers as the deployed sync may run at once
(`SYNC_MAX_CONCURRENCY`). For each EHR latency (0, 50 and 150 ms per FHIR call, set on the FHIR server):

1. the EHR's own time: N raw new bookings (conditional create Patient + Appointment) and N raw updates
   (search + `PUT` with `If-Match`), one after another, timed per event;
2. the bridge: N signed BOOKING_CREATED webhooks, each sent once the previous one is in the EHR, then N
   BOOKING_RESCHEDULED for them the same way (a front desk's view of one booking at a time);

then at 150 ms a **burst**: B new bookings at once — raw with `SYNC_MAX_CONCURRENCY` threads started
together (each event's time counted from the burst's start, when all of them "arrived"), and B webhooks
POSTed back to back to the bridge.

The bridge's delay of each event comes from its audit record (`shared.domain.chart_latency`): `received_at`
(the SQS sent time of the message ingest enqueued) → `applied_at` (stamped after the EHR write). It
leaves out what happens before the enqueue: API Gateway and the ingest handler's own few milliseconds
(bench/intake.py), and a cold start's INIT, which this process never pays (docs/performance.md).

Target: the bridge adds at most 1 EHR round trip at p50 and 3 at p99 over the EHR's own writes, a round
trip being the raw path's mean time per FHIR call at that latency.

    python -m bench.latency [--n 20] [--burst 30] [--latencies 0 50 150]
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from typing import Any

import httpx

from bench._common import reset_handlers, table, write_result
from bench.throughput import (
    Recorder,
    StageSink,
    _bookings,
    _reschedules,
    _reset_fhir,
    _templates,
    _wait_for,
    instrumented,
    raw_writes,
)
from shared.domain.chart_latency import chart_delays_ms, summary

NAME = "latency"
LATENCIES = (0, 50, 150)
BURST_LATENCY_MS = 150
#: The bridge adds at most this many EHR round trips over the EHR's own writes (p50, p99).
TARGET_ADDED_ROUND_TRIPS = {"p50": 1.0, "p99": 3.0}
KINDS = {"new_booking": "BOOKING_CREATED", "update": "BOOKING_RESCHEDULED"}
RAW_CALLS_PER_EVENT = 2


def _audit_records(stack: Any) -> list[dict[str, str]]:
    ddb = stack.resources.client("dynamodb")
    records = []
    for page in ddb.get_paginator("scan").paginate(TableName=stack.resources.audit_table):
        for item in page.get("Items", []):
            records.append({name: value.get("S", "") for name, value in item.items() if "S" in value})
    return records


def _post_each(stack: Any, recorder: Recorder, bodies: list[tuple[str, bytes]], timeout: float) -> int:
    """POST each body once the previous one's record handler returned; how many were applied in time."""
    from cli.local import post_webhook  # noqa: PLC0415

    applied = 0
    with httpx.Client(trust_env=False, timeout=30) as client:
        for _, body in bodies:
            target = len(recorder.done) + 1
            post_webhook(stack.api.url, stack.resources.webhook_secret, body, client)
            if _wait_for(partial(_at_least, recorder, target), timeout):
                applied += 1
    return applied


def _at_least(recorder: Recorder, count: int) -> bool:
    return len(recorder.done) >= count


def _post_burst(stack: Any, recorder: Recorder, bodies: list[tuple[str, bytes]], timeout: float) -> int:
    from cli.local import post_webhook  # noqa: PLC0415

    before = len(recorder.done)
    with httpx.Client(trust_env=False, timeout=30) as client:
        for _, body in bodies:
            post_webhook(stack.api.url, stack.resources.webhook_secret, body, client)
    _wait_for(lambda: len(recorder.done) >= before + len(bodies), timeout)
    return len(recorder.done) - before


def _reset(stack: Any, recorder: Recorder, tag: str, timeout: float) -> None:
    """An empty FHIR server (the practitioners seeded again) and one booking through it unmeasured: the
    reset cleared the handlers' caches, and a warm container has the practitioner looked up already."""
    _reset_fhir(stack)
    _post_each(stack, recorder, _bookings(1, f"{tag}w"), timeout)


def compare(bridge_ms: list[float], raw_ms: list[float], round_trip_ms: float) -> dict[str, Any]:
    """The bridge's and the EHR's percentiles, what the bridge adds (ms and round trips) and the verdicts."""
    bridge, raw = summary(bridge_ms), summary(raw_ms)
    added: dict[str, float] = {}
    round_trips: dict[str, float] = {}
    met: dict[str, bool] = {}
    for q, allowed in TARGET_ADDED_ROUND_TRIPS.items():
        if q in bridge and q in raw and round_trip_ms > 0:
            added[q] = round(bridge[q] - raw[q], 1)
            round_trips[q] = round(added[q] / round_trip_ms, 2)
            met[q] = round_trips[q] <= allowed
    return {
        "bridge_ms": bridge,
        "ehr_own_ms": raw,
        "round_trip_ms": round(round_trip_ms, 1),
        "added_ms": added,
        "added_round_trips": round_trips,
        "met": met,
    }


def run(n: int = 20, burst: int = 30, latencies: tuple[int, ...] = LATENCIES, timeout: float = 120.0) -> dict[str, Any]:
    from devstack.stack import LocalStack  # noqa: PLC0415
    from infra.constants import SYNC_BATCH_SIZE, SYNC_MAX_CONCURRENCY  # noqa: PLC0415
    from shared.observability import logger  # noqa: PLC0415

    workers = SYNC_MAX_CONCURRENCY
    print(
        f"Webhook → chart latency — the local stack with {workers} sync pollers; {n} events per kind, one at a "
        f"time, at EHR latencies {list(latencies)} ms; a burst of {burst} at {BURST_LATENCY_MS} ms"
    )
    recorder = Recorder()
    sink = StageSink(recorder)
    saved_stdout = sys.stdout
    stack = LocalStack(workers=workers)
    run_tag = f"lt{time.time_ns() % 10**7:07d}"
    by_latency: dict[str, Any] = {}
    burst_result: dict[str, Any] = {}
    with instrumented(recorder):
        stack.start()
        try:
            assert stack.api and stack.fhir and stack.resources
            for poller in stack.pollers:  # the deployed event source's batch size (the local default is 10)
                poller._batch_size = SYNC_BATCH_SIZE  # type: ignore[union-attr]
            handler = logger.registered_handler
            if hasattr(handler, "setStream"):
                handler.setStream(sink)
            sys.stdout = sink
            reset_handlers()  # adapters built for an earlier stack of this process point elsewhere
            _post_each(stack, recorder, _bookings(3, f"w{run_tag}"), timeout)  # warm-up (and the raw templates)
            templates = _templates(stack.fhir.base_url)
            for latency in latencies:
                stack.fhir.set_latency(latency)
                tag = f"{run_tag}l{latency}"
                raw = raw_writes(stack.fhir.base_url, templates, n, 1, tag)
                _reset(stack, recorder, tag, timeout)
                created, moved = _bookings(n, tag), _reschedules(n, tag)
                applied = _post_each(stack, recorder, created, timeout)
                applied += _post_each(stack, recorder, moved, timeout)
                records = _audit_records(stack)
                entry: dict[str, Any] = {"ehr_latency_ms": latency, "applied": applied, "sent": 2 * n}
                raw_spans = {"new_booking": raw.new_booking, "update": raw.update}
                for kind, trigger in KINDS.items():
                    uids = {uid for uid, _ in (created if kind == "new_booking" else moved)}
                    bridge_ms = chart_delays_ms(records, triggers={trigger}, booking_uids=uids)
                    raw_ms = [(end - start) * 1000 for start, end in raw_spans[kind]]
                    round_trip = sum(raw_ms) / len(raw_ms) / RAW_CALLS_PER_EVENT if raw_ms else 0.0
                    entry[kind] = compare(bridge_ms, raw_ms, round_trip)
                by_latency[str(latency)] = entry
                sys.stdout = saved_stdout
                _print(entry)
                sys.stdout = sink
            if burst:
                stack.fhir.set_latency(BURST_LATENCY_MS)
                tag = f"{run_tag}b"
                raw = raw_writes(stack.fhir.base_url, templates, burst, workers, tag)
                started = min(start for start, _ in raw.new_booking)
                raw_ms = [(end - started) * 1000 for _, end in raw.new_booking]
                round_trip = sum((end - start) * 1000 for start, end in raw.new_booking) / burst / RAW_CALLS_PER_EVENT
                _reset(stack, recorder, tag, timeout)
                bodies = _bookings(burst, tag)
                applied = _post_burst(stack, recorder, bodies, timeout)
                bridge_ms = chart_delays_ms(
                    _audit_records(stack), triggers={"BOOKING_CREATED"}, booking_uids={uid for uid, _ in bodies}
                )
                burst_result = {
                    "ehr_latency_ms": BURST_LATENCY_MS,
                    "events": burst,
                    "applied": applied,
                    "concurrency": workers,
                    "new_booking": compare(bridge_ms, raw_ms, round_trip),
                }
                sys.stdout = saved_stdout
                _print(burst_result, title=f"burst of {burst} at {BURST_LATENCY_MS} ms")
                sys.stdout = sink
            stack.fhir.set_latency(0)
        finally:
            if stack.resources:
                httpx.post(f"{stack.resources.endpoint}/moto-api/reset", timeout=10, trust_env=False)
            stack.stop()  # before stdout is back: the pollers' last lines stay in the sink
            sys.stdout = saved_stdout
    verdicts = [
        met
        for entry in [*(by_latency[str(ms)] for ms in latencies if ms > 0), burst_result]
        for kind in KINDS
        if kind in entry
        for met in entry[kind]["met"].values()
    ]
    return {
        "n": n,
        "burst": burst,
        "workers": workers,
        "target_added_round_trips": TARGET_ADDED_ROUND_TRIPS,
        "by_latency": by_latency,
        "burst_at_150": burst_result,
        "met": bool(verdicts) and all(verdicts),
    }


def _print(entry: dict[str, Any], title: str | None = None) -> None:
    rows = []
    for kind in KINDS:
        if kind not in entry:
            continue
        figures = entry[kind]
        for side, key in (("bridge", "bridge_ms"), ("EHR's own", "ehr_own_ms")):
            values = figures[key]
            rows.append([f"{kind}: {side}", values.get("n"), values.get("p50"), values.get("p95"), values.get("p99")])
        added = figures["added_ms"]
        trips = figures["added_round_trips"]
        rows.append(
            [
                f"{kind}: added (round trips of {figures['round_trip_ms']} ms)",
                "",
                f"{added.get('p50', '-')} ({trips.get('p50', '-')})",
                "",
                f"{added.get('p99', '-')} ({trips.get('p99', '-')})",
            ]
        )
    table(
        ["webhook → chart, ms", "n", "p50", "p95", "p99"],
        rows,
        title=title or f"EHR latency {entry['ehr_latency_ms']} ms per FHIR call",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20, help="events per kind at each latency, one at a time")
    parser.add_argument("--burst", type=int, default=30, help="new bookings sent at once at 150 ms (0: none)")
    parser.add_argument("--latencies", type=int, nargs="+", default=list(LATENCIES), help="EHR ms per FHIR call")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for one event (or the burst)")
    args = parser.parse_args(argv)
    write_result(NAME, run(n=args.n, burst=args.burst, latencies=tuple(args.latencies), timeout=args.timeout))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
