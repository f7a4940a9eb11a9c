"""Intake overhead: warm per-request CPU time of the real ingest handler vs a bare baseline.

Both sides run in this process against the same moto server SQS FIFO queue (devstack.aws.LocalAws,
in-process threads on 127.0.0.1), interleaved in rounds so drift hits both equally:

* handler  — `functions.ingest.handler.handler(proxy_event, context)`: Powertools logger/metrics
  decorators, Secrets Manager (cached), signature, content type, pydantic parse, lineage hash,
  SQS `send_message` with the three message attributes, JSON response;
* baseline — HMAC-SHA256 verify (constant-time compare) + `json.loads` + SHA-256 dedup id + the same
  boto3 `send_message` (same group id, dedup id and attributes) to the same queue.

CPU time is `time.thread_time()` of the calling thread: the moto server answers from other threads
of this process, so its work is excluded (and `process_time` would include it). Every request has a
distinct body (FIFO deduplication would otherwise drop repeats).

    python -m bench.intake [--iterations 600] [--warmup 100]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import hmac
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench._common import (
    CountingSink,
    compact,
    environment,
    handler_output,
    padded_booking,
    reset_handlers,
    summary_ms,
    table,
    unique_booking,
    verdict,
    write_result,
)

NAME = "intake"
TARGET_RATIO = 1.3


def _signed_events(secret: str, count: int, run: str) -> list[tuple[bytes, dict[str, Any]]]:
    from devstack.lambda_runtime import proxy_event  # noqa: PLC0415
    from shared.calcom.signature import sign  # noqa: PLC0415

    template = padded_booking()
    events = []
    for index in range(count):
        body = compact(unique_booking(template, index, run))
        headers = {"Content-Type": "application/json", "X-Cal-Signature-256": sign(secret, body)}
        events.append((body, proxy_event("POST", "/webhooks/calcom", headers, body)))
    return events


def _baseline(sqs: Any, queue_url: str, secret: bytes) -> Callable[[dict[str, Any]], None]:
    def call(event: dict[str, Any]) -> None:
        raw = event["body"].encode("utf-8")
        signature = event["headers"]["X-Cal-Signature-256"]
        if not hmac.compare_digest(hmac.new(secret, raw, hashlib.sha256).hexdigest(), signature):
            raise RuntimeError("baseline signature mismatch")
        document = json.loads(raw)
        group = hashlib.sha256(document["payload"]["iCalUID"].encode("utf-8")).hexdigest()
        digest = hashlib.sha256(raw).hexdigest()
        sqs.send_message(
            QueueUrl=queue_url,
            MessageBody=event["body"],
            MessageGroupId=group,
            MessageDeduplicationId=digest,
            MessageAttributes={
                "trigger": {"DataType": "String", "StringValue": document["triggerEvent"]},
                "schema": {"DataType": "String", "StringValue": "calcom-raw-v1"},
                "bodySha256": {"DataType": "String", "StringValue": digest},
            },
        )

    return call


def _drain(sqs: Any, queue_url: str) -> int:
    """Empty the queue between rounds (untimed): moto's FIFO send slows down linearly with queue depth."""
    drained = 0
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
            "Messages", []
        )
        if not messages:
            return drained
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
        )
        drained += len(messages)


def _timed(call: Callable[[], object]) -> tuple[float, float]:
    cpu0, wall0 = time.thread_time(), time.perf_counter()
    call()
    return time.thread_time() - cpu0, time.perf_counter() - wall0


def _stage_breakdown(events: list[tuple[bytes, dict[str, Any]]], handler: Any, context: Any) -> dict[str, float]:
    """A separate, instrumented pass: thread CPU per stage of accept_webhook (wrappers add a little)."""
    import shared.ingest.intake as intake  # noqa: PLC0415

    spent: dict[str, float] = {}
    originals = {name: getattr(intake, name) for name in ("verify_signature", "parse_webhook", "message_group_id")}

    def wrap(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + time.thread_time() - start

        return wrapper

    from functions.ingest import handler as ingest  # noqa: PLC0415

    app = ingest.root.get()
    try:
        for name, function in originals.items():
            setattr(intake, name, wrap(name, function))
        ingest.root.use(dataclasses.replace(app, send=wrap("sqs send (boto3, this thread)", app.send)))
        total = 0.0
        for _, event in events:
            cpu, _ = _timed(functools.partial(handler, event, context))
            total += cpu
    finally:
        for name, function in originals.items():
            setattr(intake, name, function)
        ingest.root.use(app)
    count = len(events)
    stages = {name: value / count * 1000 for name, value in spent.items()}
    stages["rest (decorators, logging, metrics, secrets cache, response)"] = total / count * 1000 - sum(stages.values())
    stages["total (instrumented)"] = total / count * 1000
    return stages


def run(iterations: int = 600, warmup: int = 60, rounds: int = 12) -> dict[str, Any]:
    from devstack.aws import LocalAws, handler_environment  # noqa: PLC0415
    from devstack.lambda_runtime import context_for  # noqa: PLC0415
    from devstack.stack import DEMO_CONFIG  # noqa: PLC0415

    aws = LocalAws()
    aws.start()
    try:
        resources = aws.provision(prefix="bench-intake")
        env = handler_environment(resources, ehr_base_url="http://127.0.0.1:9", clinic_config=str(DEMO_CONFIG))
        with environment(env):
            from functions.ingest.handler import handler  # noqa: PLC0415

            reset_handlers()
            per_side = warmup + iterations
            run_id = f"{time.time_ns() % 10**9:09d}"
            handler_events = _signed_events(resources.webhook_secret, per_side + 100, f"h{run_id}")
            baseline_events = _signed_events(resources.webhook_secret, per_side, f"b{run_id}")
            body_bytes = statistics.fmean(len(body) for body, _ in handler_events)
            sqs = resources.client("sqs")
            baseline = _baseline(sqs, resources.queue_url, resources.webhook_secret.encode("utf-8"))
            context = context_for("ingest")
            sink = CountingSink()
            cpu: dict[str, list[float]] = {"handler": [], "baseline": []}
            wall: dict[str, list[float]] = {"handler": [], "baseline": []}
            with handler_output(sink):
                for index in range(warmup):
                    response = handler(handler_events[index][1], context)
                    if response["statusCode"] != 202:
                        raise RuntimeError(f"ingest handler answered {response['statusCode']}: {response['body']}")
                    baseline(baseline_events[index][1])
                _drain(sqs, resources.queue_url)
                bytes_before, lines_before = sink.bytes, sink.lines
                per_round = iterations // rounds
                drained = 0
                cursor = warmup
                sides: dict[str, Callable[[int], object]] = {
                    "handler": lambda index: handler(handler_events[index][1], context),
                    "baseline": lambda index: baseline(baseline_events[index][1]),
                }
                for round_index in range(rounds):
                    batch = range(cursor, cursor + per_round)
                    order = ("handler", "baseline") if round_index % 2 == 0 else ("baseline", "handler")
                    for side in order:  # alternate who goes first: queue depth differs within a round
                        for index in batch:
                            c, w = _timed(functools.partial(sides[side], index))
                            cpu[side].append(c)
                            wall[side].append(w)
                    cursor += per_round
                    drained += _drain(sqs, resources.queue_url)
                measured = len(cpu["handler"])
                log_bytes = (sink.bytes - bytes_before) / measured
                log_lines = (sink.lines - lines_before) / measured
                stages = _stage_breakdown(handler_events[cursor : cursor + 100], handler, context)
    finally:
        aws.stop()

    handler_cpu = statistics.fmean(cpu["handler"])
    baseline_cpu = statistics.fmean(cpu["baseline"])
    handler_median = statistics.median(cpu["handler"])
    baseline_median = statistics.median(cpu["baseline"])
    ratio = handler_cpu / baseline_cpu
    ratio_median = handler_median / baseline_median
    met = ratio <= TARGET_RATIO

    print(f"Intake overhead — {measured} warm requests per side after {warmup} warmup, body {body_bytes:,.0f} bytes")
    print("CPU = time.thread_time() of the calling thread (excludes the in-process moto server's threads)")
    table(
        ["side", "CPU mean ms", "CPU p50 ms", "CPU p95 ms", "wall p50 ms", "wall p95 ms"],
        [
            [
                side,
                summary_ms(cpu[side])["mean"],
                summary_ms(cpu[side])["p50"],
                summary_ms(cpu[side])["p95"],
                summary_ms(wall[side])["p50"],
                summary_ms(wall[side])["p95"],
            ]
            for side in ("handler", "baseline")
        ],
    )
    print(
        f"\nratio handler/baseline (CPU mean) = {ratio:.2f}x   (median {ratio_median:.2f}x)   "
        f"target <= {TARGET_RATIO}x   {verdict(met)}"
    )
    table(
        ["ingest handler stage", "CPU ms/request"],
        [[name, round(value, 3)] for name, value in stages.items()],
        title="Where the handler's CPU goes (separate instrumented pass, 100 requests):",
    )
    print(f"\nhandler stdout (logs + EMF) per request: {log_bytes:,.0f} bytes in {log_lines:.1f} lines")
    print(f"messages the queue accepted (and the bench drained between rounds): {drained}")

    return {
        "iterations": measured,
        "warmup": warmup,
        "body_bytes": round(body_bytes),
        "cpu_ms": {"handler": summary_ms(cpu["handler"]), "baseline": summary_ms(cpu["baseline"])},
        "wall_ms": {"handler": summary_ms(wall["handler"]), "baseline": summary_ms(wall["baseline"])},
        "ratio_cpu_mean": round(ratio, 3),
        "ratio_cpu_median": round(ratio_median, 3),
        "target_ratio": TARGET_RATIO,
        "met": met,
        "stages_cpu_ms": {name: round(value, 4) for name, value in stages.items()},
        "handler_log_bytes_per_request": round(log_bytes),
        "handler_log_lines_per_request": round(log_lines, 2),
        "drained_messages": drained,
        "note": "CPU is time.thread_time() of the calling thread; moto serves SQS from other threads.",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.intake", description="Intake overhead: ingest handler vs a bare baseline"
    )
    parser.add_argument("--iterations", type=int, default=600)
    parser.add_argument("--warmup", type=int, default=60)
    args = parser.parse_args(argv)
    write_result(NAME, run(iterations=args.iterations, warmup=args.warmup))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
