"""Cost: what one webhook costs (USD per 1M webhooks), and the monthly bill of three clinics, from the
synthesized template.

Per webhook (`model`): AWS list prices (`bench/prices.py`) x what each webhook makes happen, measured by
the other benchmarks: CPU per ingest request and log bytes (intake); calls per event, the sync's own time,
its log bytes and DynamoDB item sizes (throughput); import times (cold start); the audit archive's work
and the drift check reconcile queues for every booking change it lists (the EMF census). Memory sizes
come from the synthesized template. Defaults for what a laptop cannot measure (AWS and EHR latencies in
the region, cold starts) are printed with every other input.

Per month (`bench.bill`): every billed resource of the template of `cdk synth -c stage=prod`, without
and with `-c vpc=true`, for three profiles (1k bookings and 3 providers, 30k and 40, 1M and 600): fixed
(the stack standing, the schedules) and variable (the bookings), each line naming the template resource,
schedule or emitted metric it comes from.

    python -m bench.cost [--ehr-latency-ms 150] [--webhooks-per-month 1000000]
"""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from bench import bill as bills
from bench._common import read_result, table, verdict, write_result
from bench.prices import HOURS_PER_MONTH, PRICE, PRICES_AS_OF
from bench.stack_template import VARIANTS, Template, synthesize

NAME = "cost"
TARGET_PER_MILLION = 8.0
#: What a cheaper front door would have to reach (REST API + WAF alone are $4.10 of it).
STRETCH_PER_MILLION = 5.0
#: The small practice's whole month, prod without VPC, WAF kept.
TARGET_SMALL_PRACTICE_MONTH = 15.0
#: A Lambda function gets one full vCPU at 1,769 MB; below that, CPU time stretches proportionally.
LAMBDA_FULL_VCPU_MB = bills.LAMBDA_FULL_VCPU_MB
LAMBDA_PLATFORM_LOG_BYTES = bills.LAMBDA_PLATFORM_LOG_BYTES
LOG_EVENT_OVERHEAD_BYTES = bills.LOG_EVENT_OVERHEAD_BYTES
#: The census activities that stand for webhooks (for the archive's work per webhook).
WEBHOOK_ACTIVITIES = ("webhook: new booking", "webhook: reschedule", "webhook: cancellation")
DRIFT_ACTIVITY = "reconcile: a booking in the window"
EMPTY_RECONCILE = "reconcile: nothing in the window"


@dataclass
class Inputs:
    """Every number the per-webhook model uses; `source` says where each came from."""

    webhooks_per_month: int = 1_000_000
    ingest_memory_mb: int = 512
    sync_memory_mb: int = 256
    archive_memory_mb: int = 256
    reconcile_memory_mb: int = 512
    sync_batch_size_max: int = 5
    sync_messages_per_invocation: float = 1.0
    ingest_cpu_ms: float = 3.0
    sync_cpu_ms: float = 10.0
    sqs_send_ms: float = 10.0
    ddb_call_ms: float = 6.0
    s3_put_ms: float = 20.0
    ehr_call_ms: float = 150.0
    ehr_calls_per_event: float = 3.0
    ddb_reads_per_event: float = 1.0
    ddb_write_units_per_event: float = 7.0
    ddb_calls_per_event: float = 4.0
    ingest_log_bytes: float = 650.0
    ingest_log_lines: float = 2.0
    sync_log_bytes: float = 500.0
    sync_log_lines: float = 2.0
    apigw_access_log_bytes: float = 620.0
    waf_log_bytes: float = 0.0
    waf: bool = True
    api_tracing: bool = True
    xray_fixed_rate: float = 0.01
    cold_start_share: float = 0.005
    ingest_init_ms: float = 450.0
    sync_init_ms: float = 600.0
    snapstart: bool = True
    #: The audit archive: one stream record → one Object Lock PUT per audit record (EMF census).
    archive_cpu_ms: float = 8.0
    archive_puts_per_webhook: float = 1.0
    archive_log_bytes: float = 180.0
    archive_log_lines: float = 1.0
    #: Reconcile lists every booking change once (its cursor) and queues a drift check for each booking it
    #: finds in sync: a sync pass that reads the Appointment back (EMF census).
    drift_checks_per_webhook: float = 1.0
    drift_cpu_ms: float = 20.0
    drift_ddb_calls: float = 2.0
    drift_ehr_calls: float = 1.0
    drift_wru: float = 2.0
    drift_rru: float = 0.0
    drift_log_bytes: float = 650.0
    drift_log_lines: float = 2.0
    reconcile_rru_per_booking: float = 2.0
    reconcile_cpu_ms_per_booking: float = 10.0
    reconcile_ddb_calls_per_booking: float = 2.0
    source: dict[str, str] = field(default_factory=dict)
    #: Template resources each line comes from (logical ids); filled by `template_inputs`.
    resources: dict[str, str] = field(default_factory=dict)


def template_inputs(inputs: Inputs, template: Template) -> None:
    """Memory sizes, WAF, API tracing and the sampling rate from the synthesized template."""
    by_service = template.function_by_service()
    for service in ("ingest", "sync", "archive", "reconcile"):
        function = by_service.get(service)
        if function is not None:
            setattr(inputs, f"{service}_memory_mb", function.memory_mb)
            inputs.resources[service] = f"AWS::Lambda::Function {function.logical_id} ({function.memory_mb} MB)"
    inputs.snapstart = bool(template.snapstart_versions())
    acls = template.of_type("AWS::WAFv2::WebACL")
    inputs.waf = bool(acls)
    inputs.resources["waf"] = " ".join(f"AWS::WAFv2::WebACL {lid}" for lid in acls) or "no web ACL"
    for lid, config in template.of_type("AWS::WAFv2::LoggingConfiguration").items():
        behaviour = (config.get("Properties", {}).get("LoggingFilter") or {}).get("DefaultBehavior")
        inputs.waf_log_bytes = 0.0 if behaviour == "DROP" else 1500.0
        inputs.resources["waf logs"] = f"AWS::WAFv2::LoggingConfiguration {lid} (DefaultBehavior {behaviour})"
    stages = template.of_type("AWS::ApiGateway::Stage")
    inputs.api_tracing = any(stage.get("Properties", {}).get("TracingEnabled") for stage in stages.values())
    inputs.resources["api"] = " ".join(f"AWS::ApiGateway::Stage {lid}" for lid in stages)
    for lid, rule in template.of_type("AWS::XRay::SamplingRule").items():
        inputs.xray_fixed_rate = float(rule["Properties"]["SamplingRule"].get("FixedRate", inputs.xray_fixed_rate))
        inputs.resources["xray"] = f"AWS::XRay::SamplingRule {lid}"
    queues = template.of_type("AWS::SQS::Queue")
    fifo = [lid for lid, q in queues.items() if q.get("Properties", {}).get("FifoQueue")]
    inputs.resources["queue"] = " ".join(f"AWS::SQS::Queue {lid}" for lid in fifo if "dlq" not in lid.lower())
    tables = template.of_type("AWS::DynamoDB::Table")
    sync = by_service.get("sync")
    written = sorted(lid for lid in tables if sync and lid in template.refs_in(sync.logical_id))
    inputs.resources["tables"] = " ".join(f"AWS::DynamoDB::Table {lid}" for lid in written or sorted(tables))
    buckets = [
        lid for lid, b in template.of_type("AWS::S3::Bucket").items() if b["Properties"].get("ObjectLockEnabled")
    ]
    inputs.resources["archive bucket"] = " ".join(f"AWS::S3::Bucket {lid}" for lid in buckets)
    writer = template.function_of_log_group()
    groups = [g for g, f in writer.items() if template.functions()[f].service in ("ingest", "sync", "archive")]
    inputs.resources["function logs"] = " ".join(f"AWS::Logs::LogGroup {lid}" for lid in sorted(groups))
    inputs.source["memory, WAF, tracing, sampling rate, SnapStart"] = "the synthesized prod template"


def _measured_inputs(inputs: Inputs) -> None:
    intake = read_result("intake")
    if intake:
        inputs.ingest_cpu_ms = float(intake["cpu_ms"]["handler"]["mean"])
        inputs.ingest_log_bytes = float(intake["handler_log_bytes_per_request"])
        inputs.ingest_log_lines = float(intake.get("handler_log_lines_per_request", inputs.ingest_log_lines))
        inputs.source["ingest CPU, ingest log bytes"] = f"bench/results/intake.json ({intake['at']})"
    throughput = read_result("throughput")
    configs = (throughput or {}).get("configs") or []
    if configs and "0" in configs[0].get("by_latency", {}):
        config = configs[0]
        # A new booking, the heavier kind of event, at no EHR latency: the counts do not depend on it, and the
        # sync's own time is cleanest there. The EHR's latency is the model's own input (ehr_call_ms).
        phase = config["by_latency"]["0"]["new_booking"]
        calls: dict[str, Any] = phase["calls"]

        def per_event(prefix: str) -> float:
            return sum(float(c["per_event"]) for name, c in calls.items() if name.startswith(prefix))

        inputs.ehr_calls_per_event = round(per_event("sync: ehr"), 2)
        inputs.ddb_calls_per_event = round(per_event("sync: aws dynamodb"), 2)
        inputs.ddb_reads_per_event = round(per_event("sync: aws dynamodb GetItem"), 2)
        inputs.ddb_write_units_per_event = round(_write_units(calls, config.get("dynamodb_item_bytes") or {}), 2)
        rest = phase["per_event_ms"].get("  of which the rest (parse, decide, project, logs)")
        if rest is not None:
            inputs.sync_cpu_ms = max(float(rest), 1.0)
        log_bytes = phase.get("log_bytes_per_event") or {}
        inputs.sync_log_bytes = float(log_bytes.get("sync", inputs.sync_log_bytes))
        inputs.source["sync calls, sync time, sync log bytes, item sizes"] = (
            f"bench/results/throughput.json ({throughput['at'] if throughput else '?'}, "
            f"{config['workers']} worker, new bookings at 0 ms EHR latency)"
        )
    coldstart = read_result("coldstart")
    if coldstart:
        imports = coldstart["imports"]
        # Lambda's INIT: runtime start-up (~100 ms) + the handler import, stretched by the CPU share.
        ingest_import = float(imports["functions.ingest.handler"]["median_ms"])
        sync_import = float(imports["functions.sync.handler"]["median_ms"])
        inputs.ingest_init_ms = round(100 + ingest_import * LAMBDA_FULL_VCPU_MB / max(inputs.ingest_memory_mb, 1), 1)
        inputs.sync_init_ms = round(100 + sync_import * LAMBDA_FULL_VCPU_MB / max(inputs.sync_memory_mb, 1), 1)
        inputs.source["INIT durations"] = f"bench/results/coldstart.json ({coldstart['at']}) + 100 ms runtime start"
    census = read_result("emf")
    if census:
        _census_inputs(inputs, census)


def _census_inputs(inputs: Inputs, census: dict[str, Any]) -> None:
    archive = [bills.work_of(census, activity, "archive") for activity in WEBHOOK_ACTIVITIES]
    invocations = sum(w.invocations for w in archive)
    if invocations:
        inputs.archive_cpu_ms = round(sum(w.cpu_ms for w in archive) / invocations, 2)
        inputs.archive_puts_per_webhook = round(sum(w.remote_calls("s3") for w in archive) / invocations, 2)
        inputs.archive_log_bytes = round(sum(w.log_bytes for w in archive) / invocations, 1)
        inputs.archive_log_lines = round(sum(w.log_lines for w in archive) / invocations, 2)
    drift = bills.work_of(census, DRIFT_ACTIVITY, "sync")
    result = (census.get("activities", {}).get(DRIFT_ACTIVITY) or {}).get("result") or {}
    checked = float(result.get("checked", 0)) if isinstance(result, dict) else 0.0
    if drift.invocations and checked:
        inputs.drift_checks_per_webhook = round(float(result.get("drift_checks", 0)) / checked, 2)
        inputs.drift_cpu_ms = round(drift.cpu_ms / drift.invocations, 2)
        inputs.drift_ddb_calls = drift.remote_calls("dynamodb") / drift.invocations
        inputs.drift_ehr_calls = drift.remote_calls("ehr") / drift.invocations
        # the first sync call in a container looks the practitioner up; later ones have it cached
        inputs.drift_ehr_calls -= (
            sum(v for k, v in drift.calls.items() if k == "ehr GET Practitioner") / drift.invocations
        )
        inputs.drift_wru, inputs.drift_rru = drift.wru / drift.invocations, drift.rru / drift.invocations
        inputs.drift_log_bytes = drift.log_bytes / drift.invocations
        inputs.drift_log_lines = drift.log_lines / drift.invocations
        busy = bills.work_of(census, DRIFT_ACTIVITY, "reconcile")
        idle = bills.work_of(census, EMPTY_RECONCILE, "reconcile")
        per_booking = busy.minus(idle).scaled(1 / checked)
        inputs.reconcile_rru_per_booking = round(per_booking.rru, 2)
        inputs.reconcile_cpu_ms_per_booking = round(per_booking.cpu_ms, 2)
        # cursor writes belong to the run, not the booking: only the reads of the booking's lineage count
        inputs.reconcile_ddb_calls_per_booking = sum(
            v for k, v in per_booking.calls.items() if k.startswith("aws dynamodb GetItem")
        )
    inputs.source["archive work, drift checks, reconcile per booking"] = f"bench/results/emf.json ({census['at']})"


#: The least write units one event can cost under the write protocol: the lease acquire (1) and the commit's
#: TransactWriteItems of the state and the audit record (2 x (1 + 1)), every item under 1 KB.
PROTOCOL_MIN_WRU = 5


def _write_units(calls: dict[str, Any], item_bytes: dict[str, dict[str, float]]) -> float:
    """WRU per event. Each PutItem/UpdateItem costs ceil(KB) of the item it writes (an update: of the whole
    item), sized from the throughput run's tables by the call's table and key prefix; a TransactWriteItems
    (the commit: lineage state and audit record) costs twice each of its items."""
    sizes = {(role, prefix): size for role, prefixes in item_bytes.items() for prefix, size in prefixes.items()}
    fallback = max(sizes.values(), default=1024.0)

    def units(role: str, prefix: str) -> int:
        return max(1, math.ceil(sizes.get((role, prefix), fallback) / 1024))

    total = 0.0
    for name, call in calls.items():
        if not name.startswith("sync: aws dynamodb "):
            continue
        operation, _, target = name.removeprefix("sync: aws dynamodb ").partition(" ")
        per_event = float(call["per_event"])
        if operation in ("PutItem", "UpdateItem"):
            role, _, prefix = target.partition(" ")
            total += per_event * units(role, prefix.rstrip("#"))
        elif operation == "TransactWriteItems":
            commit = units("state", "lineage") + units("audit", "lineage")
            total += per_event * 2 * commit
    return total


def _billed_ms(value: float) -> float:
    return float(math.ceil(value))


def model(inputs: Inputs) -> dict[str, Any]:
    """What one webhook costs, line by line: (units per webhook, price, template resources)."""
    m = inputs
    r = m.resources
    million = 1_000_000
    ingest_ms = _billed_ms(m.ingest_cpu_ms * LAMBDA_FULL_VCPU_MB / m.ingest_memory_mb + m.sqs_send_ms)
    sync_event_ms = (
        m.sync_cpu_ms * LAMBDA_FULL_VCPU_MB / m.sync_memory_mb
        + m.ddb_calls_per_event * m.ddb_call_ms
        + m.ehr_calls_per_event * m.ehr_call_ms
    )
    sync_invocations = 1 / m.sync_messages_per_invocation
    sync_ms = _billed_ms(sync_event_ms * m.sync_messages_per_invocation) / m.sync_messages_per_invocation
    archive_ms = _billed_ms(
        m.archive_cpu_ms * LAMBDA_FULL_VCPU_MB / m.archive_memory_mb + m.archive_puts_per_webhook * m.s3_put_ms
    )
    drift_ms = _billed_ms(
        m.drift_cpu_ms * LAMBDA_FULL_VCPU_MB / m.sync_memory_mb
        + m.drift_ddb_calls * m.ddb_call_ms
        + m.drift_ehr_calls * m.ehr_call_ms
    )
    # reconcile's own work for a booking it lists: assess it (its lineage read twice), queue the drift check
    reconcile_ms = (
        m.reconcile_cpu_ms_per_booking * LAMBDA_FULL_VCPU_MB / m.reconcile_memory_mb
        + m.reconcile_ddb_calls_per_booking * m.ddb_call_ms
        + m.sqs_send_ms
    )
    drifts = m.drift_checks_per_webhook
    gb = 1 / 1024
    gb_s_init = m.cold_start_share * (
        m.ingest_memory_mb * gb * m.ingest_init_ms / 1000 + m.sync_memory_mb * gb * m.sync_init_ms / 1000
    )
    function_log_bytes = (
        m.ingest_log_bytes
        + m.ingest_log_lines * LOG_EVENT_OVERHEAD_BYTES
        + LAMBDA_PLATFORM_LOG_BYTES
        + m.sync_log_bytes
        + m.sync_log_lines * LOG_EVENT_OVERHEAD_BYTES
        + LAMBDA_PLATFORM_LOG_BYTES * sync_invocations
        + m.archive_log_bytes
        + m.archive_log_lines * LOG_EVENT_OVERHEAD_BYTES
        + LAMBDA_PLATFORM_LOG_BYTES
        + drifts * (m.drift_log_bytes + m.drift_log_lines * LOG_EVENT_OVERHEAD_BYTES + LAMBDA_PLATFORM_LOG_BYTES)
    )
    access_log_bytes = m.apigw_access_log_bytes + LOG_EVENT_OVERHEAD_BYTES
    waf_log_bytes = m.waf_log_bytes + LOG_EVENT_OVERHEAD_BYTES if m.waf and m.waf_log_bytes else 0.0
    log_bytes = function_log_bytes + access_log_bytes + waf_log_bytes
    # send; receive + delete per sync invocation; the drift check's message the same way
    sqs_requests = 1 + 2 * sync_invocations + 3 * drifts
    api = r.get("api", "API stage")
    sync_fn = r.get("sync", "sync function")
    lines: dict[str, tuple[float, str, str]] = {
        "API Gateway REST request": (1.0, "apigw_rest_request", api),
        "WAF request inspection": (1.0 if m.waf else 0.0, "waf_request", r.get("waf", "web ACL")),
        "X-Ray traces (API stage, sampling rule)": (
            m.xray_fixed_rate if m.api_tracing else 0.0,
            "xray_trace",
            r.get("xray", "sampling rule"),
        ),
        "Lambda requests (ingest + sync + archive)": (
            2 + sync_invocations,
            "lambda_request",
            " ".join(r.get(s, s) for s in ("ingest", "sync", "archive")),
        ),
        "Lambda ingest duration (GB-s)": (
            m.ingest_memory_mb * gb * ingest_ms / 1000,
            "lambda_arm_gb_second",
            r.get("ingest", "ingest"),
        ),
        "Lambda sync duration (GB-s)": (m.sync_memory_mb * gb * sync_ms / 1000, "lambda_arm_gb_second", sync_fn),
        "Lambda archive duration (GB-s)": (
            m.archive_memory_mb * gb * archive_ms / 1000,
            "lambda_arm_gb_second",
            r.get("archive", "archive"),
        ),
        "Lambda INIT / restore duration (cold starts, GB-s)": (
            gb_s_init,
            "lambda_arm_gb_second",
            f"{r.get('ingest', 'ingest')} {sync_fn}",
        ),
        "Lambda SnapStart restores (cold starts, GB)": (
            m.cold_start_share * (m.ingest_memory_mb + m.sync_memory_mb) * gb if m.snapstart else 0.0,
            "snapstart_restore_gb",
            "the AWS::Lambda::Version of ingest and sync",
        ),
        "SQS FIFO requests (the event; its drift check)": (sqs_requests, "sqs_fifo_request", r.get("queue", "queue")),
        "DynamoDB writes (WRU)": (m.ddb_write_units_per_event, "ddb_wru", r.get("tables", "tables")),
        "DynamoDB reads (RRU, consistent)": (m.ddb_reads_per_event, "ddb_rru", r.get("tables", "tables")),
        "S3 Object Lock PUT of the audit record": (
            m.archive_puts_per_webhook,
            "s3_put",
            r.get("archive bucket", "archive bucket"),
        ),
        "Drift check: Lambda request (reconcile queues one per booking change in sync)": (
            drifts,
            "lambda_request",
            sync_fn,
        ),
        "Drift check: sync duration (GB-s)": (
            drifts * m.sync_memory_mb * gb * drift_ms / 1000,
            "lambda_arm_gb_second",
            sync_fn,
        ),
        "Drift check: reconcile's share of its run for the booking (GB-s)": (
            drifts * m.reconcile_memory_mb * gb * reconcile_ms / 1000,
            "lambda_arm_gb_second",
            r.get("reconcile", "reconcile"),
        ),
        "Drift check: DynamoDB writes (lease, release)": (drifts * m.drift_wru, "ddb_wru", r.get("tables", "tables")),
        "Drift check: DynamoDB reads (reconcile's uid and lineage lookups)": (
            drifts * (m.drift_rru + m.reconcile_rru_per_booking),
            "ddb_rru",
            r.get("tables", "tables"),
        ),
        "CloudWatch Logs ingestion (functions, API access log)": (
            log_bytes / 1e9,
            "cw_logs_ingest_gb",
            f"{r.get('function logs', 'function log groups')} + the stage's access log group",
        ),
        "CloudWatch Logs data protection scan (function log groups)": (
            function_log_bytes / 1e9,
            "cw_logs_data_protection_gb",
            f"DataProtectionPolicy of {r.get('function logs', 'function log groups')}",
        ),
    }
    breakdown: dict[str, dict[str, Any]] = {
        name: {
            "units_per_webhook": units,
            "price": price,
            "source": source,
            "usd_per_million": units * PRICE[price].usd * million,
        }
        for name, (units, price, source) in lines.items()
    }
    total = sum(float(line["usd_per_million"]) for line in breakdown.values())
    return {
        "derived": {
            "ingest_billed_ms": ingest_ms,
            "sync_billed_ms_per_event": round(sync_ms, 1),
            "archive_billed_ms": archive_ms,
            "drift_check_billed_ms": drift_ms,
            "reconcile_ms_per_booking": round(reconcile_ms, 1),
            "sync_invocations_per_webhook": sync_invocations,
            "sqs_requests_per_webhook": sqs_requests,
            "log_bytes_per_webhook": round(log_bytes),
        },
        "log_bytes": {
            "ingest": m.ingest_log_bytes + m.ingest_log_lines * LOG_EVENT_OVERHEAD_BYTES + LAMBDA_PLATFORM_LOG_BYTES,
            "sync": m.sync_log_bytes
            + m.sync_log_lines * LOG_EVENT_OVERHEAD_BYTES
            + LAMBDA_PLATFORM_LOG_BYTES * sync_invocations
            + drifts * (m.drift_log_bytes + m.drift_log_lines * LOG_EVENT_OVERHEAD_BYTES + LAMBDA_PLATFORM_LOG_BYTES),
            "archive": m.archive_log_bytes + m.archive_log_lines * LOG_EVENT_OVERHEAD_BYTES + LAMBDA_PLATFORM_LOG_BYTES,
            "access": access_log_bytes,
        },
        "breakdown": breakdown,
        "total_per_million": total,
    }


def _levers(inputs: Inputs, base: dict[str, Any]) -> list[tuple[str, float]]:
    """What would close the gap: each change alone, re-modelled."""
    levers: list[tuple[str, float]] = []
    total = float(base["total_per_million"])

    def alt(label: str, **changes: Any) -> None:
        changed = Inputs(**{**asdict(inputs), **changes})
        levers.append((label, float(model(changed)["total_per_million"]) - total))

    alt("API stage X-Ray off entirely", api_tracing=False)
    alt("sync memory → 128 MB", sync_memory_mb=128)
    alt("EHR: 2 calls for a new patient's booking too (transaction Bundle, not built)", ehr_calls_per_event=2.0)
    alt("5 messages per sync invocation (busy hours)", sync_messages_per_invocation=float(inputs.sync_batch_size_max))
    alt("no drift check per booking change (reconcile's drift checks off)", drift_checks_per_webhook=0.0)
    combined = Inputs(**{**asdict(inputs), "ehr_calls_per_event": 2.0, "sync_memory_mb": 128})
    together = float(model(combined)["total_per_million"]) - total
    levers.append(("EHR 2 calls + 128 MB together (REST + WAF kept)", together))
    levers.append(
        (
            "HTTP API instead of REST (loses WAF association)",
            (PRICE["apigw_http_request"].usd - PRICE["apigw_rest_request"].usd) * 1e6,
        )
    )
    return levers


def per_webhook_for(inputs: Inputs, webhooks_per_month: float) -> dict[str, tuple[float, str, str]]:
    """The per-webhook lines for a bill at `webhooks_per_month` (the cold-start share follows the rate)."""
    per_hour = webhooks_per_month / HOURS_PER_MONTH
    changed = Inputs(**{**asdict(inputs), "cold_start_share": bills.cold_share(per_hour, bills.Traffic().warm_minutes)})
    result = model(changed)
    lines: dict[str, tuple[Any, str, str]] = {
        name: (line["units_per_webhook"], line["price"], line["source"]) for name, line in result["breakdown"].items()
    }
    lines["_log_bytes"] = (result["log_bytes"], "", "")
    return lines


def monthly_bills(inputs: Inputs, templates: dict[str, Template]) -> dict[str, dict[str, bills.Bill]]:
    census = read_result("emf") or {}
    throughput = read_result("throughput") or {}
    item_bytes = ((throughput.get("configs") or [{}])[0]).get("dynamodb_item_bytes") or {}
    found: dict[str, dict[str, bills.Bill]] = {}
    for variant, template in templates.items():
        variant_inputs = Inputs(**{**asdict(inputs), "resources": {}, "source": dict(inputs.source)})
        template_inputs(variant_inputs, template)
        found[variant] = {}
        for profile in bills.PROFILES:
            webhooks = profile.bookings_per_month * sum(bills.Traffic().webhooks_per_booking.values())
            per_webhook = per_webhook_for(variant_inputs, webhooks)
            found[variant][profile.key] = bills.bill(
                template, census, profile, variant=variant, per_webhook=per_webhook, item_bytes=item_bytes
            )
    return found


def _print_bills(found: dict[str, dict[str, bills.Bill]]) -> None:
    rows = []
    for variant, by_profile in found.items():
        for one in by_profile.values():
            rows.append(
                [
                    variant,
                    one.profile.label,
                    f"{one.fixed:.2f}",
                    f"{one.variable:.2f}",
                    f"{one.total:.2f}",
                    f"{one.total - one.free_tier_credit:.2f}",
                ]
            )
    table(
        ["template", "profile", "fixed", "variable", "total USD/month", "with the always-free tier"],
        rows,
        title="Monthly bill:",
    )
    for variant, by_profile in found.items():
        small = by_profile["small_practice"]
        table(
            ["service", "item", "quantity", "USD", "part", "from"],
            [
                [line.service, line.item, f"{line.quantity:.4g}", f"{line.usd:.2f}", line.part, line.source[:110]]
                for line in sorted(small.lines, key=lambda line: -line.usd)
                if line.usd >= 0.005
            ],
            title=f"{variant}, {small.profile.label}: every line of at least half a cent",
        )
        for note in small.notes:
            print(f"note: {note}")


#: What the stack costs standing, before any traffic and whatever its size: the security controls and on-call
#: (the lines of these items in the prod bill).
STANDING = {
    "WAF": ("WAF", ("web ACL", "rules")),
    "KMS keys": ("KMS", ("customer managed keys",)),
    "secrets": ("Secrets Manager", ("secrets",)),
    "alarms": ("CloudWatch", ("alarms",)),
    "dashboard": ("CloudWatch", ("dashboards",)),
}


def _standing(one: bills.Bill) -> dict[str, Any]:
    items = {
        name: round(
            sum(line.usd for line in one.lines if line.service == service and line.item.startswith(prefixes)), 2
        )
        for name, (service, prefixes) in STANDING.items()
    }
    return {"items": items, "total": round(sum(items.values()), 2)}


def run(
    ehr_latency_ms: float | None = None, webhooks_per_month: int | None = None, *, with_bills: bool = True
) -> dict[str, Any]:
    templates = (
        {variant: Template(synthesize(**context)) for variant, context in VARIANTS.items()} if with_bills else {}
    )
    inputs = Inputs()
    if templates:
        template_inputs(inputs, templates["prod"])
    _measured_inputs(inputs)
    if ehr_latency_ms is not None:
        inputs.ehr_call_ms = ehr_latency_ms
    if webhooks_per_month is not None:
        inputs.webhooks_per_month = webhooks_per_month
    for name in ("sqs_send_ms", "ddb_call_ms", "s3_put_ms", "ehr_call_ms", "cold_start_share"):
        inputs.source.setdefault(name, "documented default (in-region AWS / a cloud EHR; not measurable here)")
    result = model(inputs)
    levers = _levers(inputs, result)
    floor = (
        (PRICE["apigw_rest_request"].usd + (PRICE["waf_request"].usd if inputs.waf else 0.0)) * 1e6
        + 3 * PRICE["sqs_fifo_request"].usd * 1e6
        + 2 * PRICE["lambda_request"].usd * 1e6
    )
    # What the write protocol itself writes at the least: the lease (1 WRU) and the commit's transaction
    # (state + audit record, 1 KB each, billed twice) - on top of the floor, before compute and logs.
    protocol_floor = floor + PROTOCOL_MIN_WRU * PRICE["ddb_wru"].usd * 1e6
    sensitivity = {
        f"EHR {ms} ms/call": float(model(Inputs(**{**asdict(inputs), "ehr_call_ms": ms}))["total_per_million"])
        for ms in (25, 50, 150, 300)
    }
    total = float(result["total_per_million"])
    met = total <= TARGET_PER_MILLION

    print(f"Cost model — AWS list prices {PRICES_AS_OF}")
    values = {k: v for k, v in asdict(inputs).items() if k not in ("source", "resources")}
    table(["input", "value"], [[k, v] for k, v in values.items()], title="Inputs:")
    table(["input", "source"], list(inputs.source.items()), title="Sources:")
    table(
        ["price", "USD", "unit", "page"],
        [[k, f"{p.usd:.10g}", p.unit, p.page] for k, p in PRICE.items()],
        title="Prices:",
    )
    table(["derived", "value"], list(result["derived"].items()), title="Derived per webhook:")
    table(
        ["line", "units per webhook", "USD per 1M webhooks", "from"],
        [
            [name, f"{line['units_per_webhook']:.4g}", f"{line['usd_per_million']:.2f}", line["source"][:90]]
            for name, line in result["breakdown"].items()
        ]
        + [["TOTAL", "", f"{total:.2f}", ""]],
        title="Cost per 1M webhooks:",
    )
    print(f"target <= ${TARGET_PER_MILLION:.2f} per 1M webhooks   {verdict(met)}")
    table(["EHR latency", "USD per 1M"], [[k, f"{v:.2f}"] for k, v in sensitivity.items()], title="Sensitivity:")
    table(["change (alone)", "USD per 1M"], [[k, f"{v:+.2f}"] for k, v in levers], title="What would close the gap:")
    print(
        f"structural floor, before any compute, storage or logs: REST request + WAF + 3 FIFO requests + "
        f"2 Lambda requests = ${floor:.2f} per 1M; with the write protocol's least DynamoDB writes (lease + "
        f"transactional commit of state and audit, {PROTOCOL_MIN_WRU} WRU) = ${protocol_floor:.2f}"
    )
    found = monthly_bills(inputs, templates) if templates else {}
    if found:
        _print_bills(found)
    small = found.get("prod", {}).get("small_practice")
    return {
        "small_practice_by_service": {k: round(v, 2) for k, v in small.by_service().items()} if small else None,
        "small_practice_standing": _standing(small) if small else None,
        "prices_as_of": PRICES_AS_OF,
        "prices": {k: asdict(p) for k, p in PRICE.items()},
        "inputs": values,
        "sources": inputs.source,
        **{k: v for k, v in result.items() if k != "log_bytes"},
        "total_per_million": round(total, 2),
        "target_per_million": TARGET_PER_MILLION,
        "met": met,
        "sensitivity": {k: round(v, 2) for k, v in sensitivity.items()},
        "levers": {k: round(v, 2) for k, v in levers},
        "structural_floor_per_million": round(floor, 2),
        "protocol_floor_per_million": round(protocol_floor, 2),
        "monthly": {variant: {key: one.as_dict() for key, one in by.items()} for variant, by in found.items()},
        "target_small_practice_month": TARGET_SMALL_PRACTICE_MONTH,
        "small_practice_met": (small.total <= TARGET_SMALL_PRACTICE_MONTH) if small else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cost", description="Cost per 1M webhooks and per month")
    parser.add_argument("--ehr-latency-ms", type=float, default=None, help="mean EHR call latency (default 150)")
    parser.add_argument("--webhooks-per-month", type=int, default=None, help="traffic shape (default 1,000,000)")
    args = parser.parse_args(argv)
    write_result(NAME, run(ehr_latency_ms=args.ehr_latency_ms, webhooks_per_month=args.webhooks_per_month))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
