"""Cost model: AWS list prices x per-webhook request counts and durations → $ per 1M webhooks.

Inputs, in order of preference: the other benchmarks' results (`bench/results/*.json`: CPU per
ingest request, calls and log bytes per event, DynamoDB item sizes, import times), the stack's own
numbers (`infra/constants.py`: memory sizes, batch size; `infra/` sources: WAF and API tracing on),
and documented defaults for what a laptop cannot measure (AWS and EHR latencies in the region,
traffic shape). Every input is printed. Fixed monthly costs (KMS key, secrets, WAF ACL and rules,
alarms, custom metrics, NAT) are listed separately: they do not scale with webhooks.

    python -m bench.cost [--ehr-latency-ms 150] [--webhooks-per-month 1000000]
"""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from bench._common import REPO_ROOT, read_result, table, verdict, write_result

NAME = "cost"
TARGET_PER_MILLION = 8.0
#: What a cheaper front door would have to reach (REST API + WAF alone are $4.10 of it).
STRETCH_PER_MILLION = 5.0

# --- AWS list prices, us-east-1, on-demand, no free tier ------------------------------------------
# As published on the AWS pricing pages in 2025 (DynamoDB on-demand after the 2024-11-01 price cut).
# Not fetched by this script: check them before quoting a number to a clinic.
PRICES_AS_OF = "2025-06 (AWS public price list, us-east-1; not re-verified by this run)"
PRICE = {
    "apigw_rest_per_million": 3.50,  # REST API requests, first 333M/month
    "apigw_http_per_million": 1.00,  # HTTP API (for the "what would close it" line only)
    "waf_per_million_requests": 0.60,
    "xray_per_million_traces": 5.00,  # traces recorded
    "lambda_per_million_requests": 0.20,
    "lambda_arm_per_gb_second": 0.0000133334,  # arm64, first 7.5B GB-s/month
    "sqs_fifo_per_million_requests": 0.50,  # each 64 KB chunk of a payload is one request
    "ddb_per_million_wru": 0.625,  # on-demand write request units (1 KB)
    "ddb_per_million_rru": 0.125,  # on-demand read request units (4 KB strongly consistent)
    "kms_per_10k_requests": 0.03,
    "secretsmanager_per_10k_calls": 0.05,
    "logs_ingest_per_gb": 0.50,  # CloudWatch Logs standard ingestion (and vended WAF logs, first 10 TB)
    # SnapStart for Python: restoring a snapshot, per GB of memory restored; caching, per GB-second that a
    # published version stays active (minimum 3 hours) - a fixed monthly cost per function.
    "snapstart_restore_per_gb": 0.0001397998,
    "snapstart_cache_per_gb_second": 0.0000015046,
    # fixed monthly
    "kms_key_month": 1.00,
    "secret_month": 0.40,
    "waf_web_acl_month": 5.00,
    "waf_rule_month": 1.00,
    "custom_metric_month": 0.30,
    "alarm_month": 0.10,
}
#: A Lambda function gets one full vCPU at 1,769 MB; below that, CPU time stretches proportionally.
LAMBDA_FULL_VCPU_MB = 1769
#: START, END and REPORT lines Lambda writes per invocation (bytes, typical).
LAMBDA_PLATFORM_LOG_BYTES = 330
#: CloudWatch Logs counts each log event's size plus 26 bytes.
LOG_EVENT_OVERHEAD_BYTES = 26


@dataclass
class Inputs:
    """Every number the model uses; `source` says where each came from."""

    webhooks_per_month: int = 1_000_000
    ingest_memory_mb: int = 512
    sync_memory_mb: int = 512
    sync_batch_size_max: int = 5
    sync_messages_per_invocation: float = 1.0
    ingest_cpu_ms: float = 3.0
    sync_cpu_ms: float = 10.0
    sqs_send_ms: float = 10.0
    ddb_call_ms: float = 6.0
    secrets_call_ms: float = 15.0
    ehr_call_ms: float = 150.0
    ehr_calls_per_event: float = 4.0
    ddb_reads_per_event: float = 3.0
    ddb_write_units_per_event: float = 6.0
    ddb_calls_per_event: float = 8.0
    ingest_log_bytes: float = 650.0
    ingest_log_lines: float = 2.0
    sync_log_bytes: float = 500.0
    sync_log_lines: float = 2.0
    apigw_access_log_bytes: float = 620.0
    waf_log_bytes: float = 1500.0
    waf: bool = True
    api_tracing: bool = True
    xray_fixed_rate: float = 0.05
    xray_reservoir_per_s: float = 1.0
    cold_start_share: float = 0.005
    ingest_init_ms: float = 450.0
    sync_init_ms: float = 600.0
    kms_principals: int = 2
    ddb_cmk_tables: int = 3
    data_key_reuse_seconds: int = 300
    secret_cache_seconds: int = 300
    ingest_warm_containers: int = 1
    source: dict[str, str] = field(default_factory=dict)


def _infra_inputs(inputs: Inputs) -> None:
    try:
        from infra import constants  # noqa: PLC0415 - optional: the infra package may be absent
    except ImportError:
        inputs.source["memory"] = "default (infra/constants.py not importable)"
        return
    inputs.ingest_memory_mb = int(getattr(constants, "INGEST_MEMORY_MB", inputs.ingest_memory_mb))
    inputs.sync_memory_mb = int(getattr(constants, "SYNC_MEMORY_MB", inputs.sync_memory_mb))
    inputs.sync_batch_size_max = int(getattr(constants, "SYNC_BATCH_SIZE", inputs.sync_batch_size_max))
    inputs.source["memory, batch size"] = "infra/constants.py"
    api = REPO_ROOT / "infra" / "constructs" / "api.py"
    config = REPO_ROOT / "infra" / "config.py"
    if api.is_file():
        inputs.api_tracing = bool(re.search(r"tracing_enabled\s*=\s*True", api.read_text(encoding="utf-8")))
        inputs.source["API stage X-Ray tracing"] = "infra/constructs/api.py (tracing_enabled)"
    inputs.xray_fixed_rate = float(getattr(constants, "XRAY_API_SAMPLING_RATE", inputs.xray_fixed_rate))
    inputs.xray_reservoir_per_s = float(getattr(constants, "XRAY_API_SAMPLING_RESERVOIR", inputs.xray_reservoir_per_s))
    inputs.source["X-Ray sampling rule"] = "infra/constants.py (XRAY_API_SAMPLING_*)"
    if api.is_file() and re.search(r'"DefaultBehavior":\s*"DROP"', api.read_text(encoding="utf-8")):
        inputs.waf_log_bytes = 0.0  # only blocked/counted requests are logged: not a webhook's cost
        inputs.source["WAF logging scope"] = "infra/constructs/api.py (logging_filter: blocked and counted only)"
    if config.is_file():
        inputs.waf = bool(re.search(r"waf:\s*bool\s*=\s*True", config.read_text(encoding="utf-8")))
        inputs.source["WAF on"] = "infra/deployment.py (DeploymentConfig.waf default)"


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
        # The sync's own work on this machine: busy time minus the time waiting on EHR and AWS calls.
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
    m = inputs
    million = 1_000_000
    ingest_stretch = LAMBDA_FULL_VCPU_MB / m.ingest_memory_mb
    sync_stretch = LAMBDA_FULL_VCPU_MB / m.sync_memory_mb
    ingest_ms = _billed_ms(m.ingest_cpu_ms * ingest_stretch + m.sqs_send_ms)
    sync_event_ms = (
        m.sync_cpu_ms * sync_stretch + m.ddb_calls_per_event * m.ddb_call_ms + m.ehr_calls_per_event * m.ehr_call_ms
    )
    sync_invocations = 1 / m.sync_messages_per_invocation
    sync_ms = _billed_ms(sync_event_ms * m.sync_messages_per_invocation) / m.sync_messages_per_invocation
    gb_s_ingest = m.ingest_memory_mb / 1024 * ingest_ms / 1000
    gb_s_sync = m.sync_memory_mb / 1024 * sync_ms / 1000
    gb_s_init = m.cold_start_share * (
        m.ingest_memory_mb / 1024 * m.ingest_init_ms / 1000 + m.sync_memory_mb / 1024 * m.sync_init_ms / 1000
    )
    seconds_per_month = 30 * 24 * 3600
    # KMS: SQS asks for a data key per principal and reuse period; DynamoDB refreshes each CMK table key
    # about as often; every Secrets Manager read decrypts once.
    kms_periodic = (m.kms_principals + m.ddb_cmk_tables) * seconds_per_month / m.data_key_reuse_seconds
    sm_periodic = m.ingest_warm_containers * seconds_per_month / m.secret_cache_seconds
    sm_per_webhook = sm_periodic / m.webhooks_per_month + m.cold_start_share * (1 + 2)
    kms_per_webhook = kms_periodic / m.webhooks_per_month + sm_per_webhook
    # X-Ray default sampling: the first request each second, then 5 %. Poisson arrivals at the mean rate.
    rate = m.webhooks_per_month / seconds_per_month
    reservoir = (1 - math.exp(-rate)) if m.xray_reservoir_per_s else 0.0
    traced_share = (reservoir + m.xray_fixed_rate * max(0.0, rate - reservoir)) / rate if rate else 0.0
    log_bytes = (
        m.ingest_log_bytes
        + m.ingest_log_lines * LOG_EVENT_OVERHEAD_BYTES
        + LAMBDA_PLATFORM_LOG_BYTES
        + m.sync_log_bytes
        + m.sync_log_lines * LOG_EVENT_OVERHEAD_BYTES
        + LAMBDA_PLATFORM_LOG_BYTES * sync_invocations
        + m.apigw_access_log_bytes
        + LOG_EVENT_OVERHEAD_BYTES
        + (m.waf_log_bytes + LOG_EVENT_OVERHEAD_BYTES if m.waf else 0)
    )
    sqs_requests = 1 + 2 * sync_invocations  # send; receive + delete batch per sync invocation
    lines = {
        "API Gateway REST request": (1.0, PRICE["apigw_rest_per_million"]),
        "WAF request inspection": (1.0 if m.waf else 0.0, PRICE["waf_per_million_requests"]),
        "X-Ray traces (API stage, sampling rule)": (
            traced_share if m.api_tracing else 0.0,
            PRICE["xray_per_million_traces"],
        ),
        "Lambda requests (ingest + sync)": (1 + sync_invocations, PRICE["lambda_per_million_requests"]),
        "Lambda ingest duration (GB-s)": (gb_s_ingest, PRICE["lambda_arm_per_gb_second"] * million),
        "Lambda sync duration (GB-s)": (gb_s_sync, PRICE["lambda_arm_per_gb_second"] * million),
        "Lambda INIT / restore duration (cold starts, GB-s)": (gb_s_init, PRICE["lambda_arm_per_gb_second"] * million),
        "Lambda SnapStart restores (cold starts, GB)": (
            m.cold_start_share * (m.ingest_memory_mb + m.sync_memory_mb) / 1024,
            PRICE["snapstart_restore_per_gb"] * million,
        ),
        "SQS FIFO requests": (sqs_requests, PRICE["sqs_fifo_per_million_requests"]),
        "DynamoDB writes (WRU)": (m.ddb_write_units_per_event, PRICE["ddb_per_million_wru"]),
        "DynamoDB reads (RRU, consistent)": (m.ddb_reads_per_event, PRICE["ddb_per_million_rru"]),
        "KMS requests": (kms_per_webhook, PRICE["kms_per_10k_requests"] * 100),
        "Secrets Manager calls": (sm_per_webhook, PRICE["secretsmanager_per_10k_calls"] * 100),
        "CloudWatch Logs ingestion (bytes)": (log_bytes, PRICE["logs_ingest_per_gb"] / 1e9 * million),
    }
    breakdown = {
        name: {"units_per_webhook": units, "usd_per_million": units * price} for name, (units, price) in lines.items()
    }
    total = sum(line["usd_per_million"] for line in breakdown.values())
    return {
        "derived": {
            "ingest_billed_ms": ingest_ms,
            "sync_billed_ms_per_event": round(sync_ms, 1),
            "sync_invocations_per_webhook": sync_invocations,
            "sqs_requests_per_webhook": sqs_requests,
            "log_bytes_per_webhook": round(log_bytes),
            "xray_traced_share": round(traced_share, 3),
            "mean_webhooks_per_second": round(rate, 3),
            "kms_requests_per_webhook": round(kms_per_webhook, 4),
            "secrets_calls_per_webhook": round(sm_per_webhook, 4),
        },
        "breakdown": breakdown,
        "total_per_million": total,
    }


def _fixed_monthly(inputs: Inputs) -> dict[str, float]:
    fixed = {
        "KMS customer keys (data, telemetry) x $1": 2 * PRICE["kms_key_month"],
        "Secrets Manager secrets (webhook, pseudonym, EHR auth) x $0.40": 3 * PRICE["secret_month"],
        "CloudWatch custom metrics (EMF, ~12) x $0.30": 12 * PRICE["custom_metric_month"],
        "CloudWatch alarms (~8) x $0.10": 8 * PRICE["alarm_month"],
    }
    month_seconds = 30 * 24 * 3600
    snapstart_gb = (inputs.ingest_memory_mb + inputs.sync_memory_mb) / 1024
    fixed["SnapStart snapshot caching (ingest + sync, one active version each)"] = (
        snapstart_gb * month_seconds * PRICE["snapstart_cache_per_gb_second"]
    )
    if inputs.waf:
        fixed["WAF web ACL + 4 rules"] = PRICE["waf_web_acl_month"] + 4 * PRICE["waf_rule_month"]
    return fixed


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
    combined = Inputs(**{**asdict(inputs), "ehr_calls_per_event": 2.0, "sync_memory_mb": 128})
    together = float(model(combined)["total_per_million"]) - total
    levers.append(("EHR 2 calls + 128 MB together (REST + WAF kept)", together))
    levers.append(
        (
            "HTTP API instead of REST (loses WAF association)",
            PRICE["apigw_http_per_million"] - PRICE["apigw_rest_per_million"],
        )
    )
    return levers


def run(ehr_latency_ms: float | None = None, webhooks_per_month: int | None = None) -> dict[str, Any]:
    inputs = Inputs()
    _infra_inputs(inputs)
    _measured_inputs(inputs)
    if ehr_latency_ms is not None:
        inputs.ehr_call_ms = ehr_latency_ms
    if webhooks_per_month is not None:
        inputs.webhooks_per_month = webhooks_per_month
    for name in ("sqs_send_ms", "ddb_call_ms", "ehr_call_ms", "cold_start_share", "webhooks_per_month"):
        inputs.source.setdefault(name, "documented default (in-region AWS / a cloud EHR; not measurable here)")
    result = model(inputs)
    fixed = _fixed_monthly(inputs)
    levers = _levers(inputs, result)
    floor = (
        PRICE["apigw_rest_per_million"]
        + (PRICE["waf_per_million_requests"] if inputs.waf else 0.0)
        + 3 * PRICE["sqs_fifo_per_million_requests"]
        + 2 * PRICE["lambda_per_million_requests"]
    )
    # What the write protocol itself writes at the least: the lease (1 WRU) and the commit's transaction
    # (state + audit record, 1 KB each, billed twice) - on top of the floor, before compute and logs.
    protocol_floor = floor + PROTOCOL_MIN_WRU * PRICE["ddb_per_million_wru"]
    sensitivity = {
        f"EHR {ms} ms/call": float(model(Inputs(**{**asdict(inputs), "ehr_call_ms": ms}))["total_per_million"])
        for ms in (25, 50, 150, 300)
    }
    total = float(result["total_per_million"])
    met = total <= TARGET_PER_MILLION

    print(f"Cost model — AWS list prices {PRICES_AS_OF}")
    values = {k: v for k, v in asdict(inputs).items() if k != "source"}
    table(["input", "value"], [[k, v] for k, v in values.items()], title="Inputs:")
    table(["input", "source"], list(inputs.source.items()), title="Sources:")
    table(["price", "USD"], [[k, v] for k, v in PRICE.items()], title="Prices:")
    table(["derived", "value"], list(result["derived"].items()), title="Derived per webhook:")
    table(
        ["line", "units per webhook", "USD per 1M webhooks"],
        [
            [name, f"{line['units_per_webhook']:.4g}", f"{line['usd_per_million']:.2f}"]
            for name, line in result["breakdown"].items()
        ]
        + [["TOTAL", "", f"{total:.2f}"]],
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
    table(["fixed monthly (not per webhook)", "USD/month"], [[k, f"{v:.2f}"] for k, v in fixed.items()])
    return {
        "prices_as_of": PRICES_AS_OF,
        "prices": PRICE,
        "inputs": values,
        "sources": inputs.source,
        **result,
        "total_per_million": round(total, 2),
        "target_per_million": TARGET_PER_MILLION,
        "met": met,
        "sensitivity": {k: round(v, 2) for k, v in sensitivity.items()},
        "levers": {k: round(v, 2) for k, v in levers},
        "structural_floor_per_million": round(floor, 2),
        "protocol_floor_per_million": round(protocol_floor, 2),
        "fixed_monthly": fixed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cost", description="Cost per 1M webhooks")
    parser.add_argument("--ehr-latency-ms", type=float, default=None, help="mean EHR call latency (default 150)")
    parser.add_argument("--webhooks-per-month", type=int, default=None, help="traffic shape (default 1,000,000)")
    args = parser.parse_args(argv)
    write_result(NAME, run(ehr_latency_ms=args.ehr_latency_ms, webhooks_per_month=args.webhooks_per_month))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
