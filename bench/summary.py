"""`bench/results/summary.json`: the headline figures of one `make bench` run, each with its target.

Built from the per-script results (`intake`, `coldstart`, `throughput`, `cost`) so every other view
(the table `make bench` prints, docs/performance.md's and README's "Latest figures") is rendered from
this one file and cannot contradict it (`python -m bench.report`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench._common import machine, read_result, results_dir, table

SUMMARY_NAME = "summary.json"
#: The keys every summary has (a smoke run's figures are not meaningful, but its keys are the same).
REQUIRED_KEYS = (
    "intake_ratio",
    "cold_import_ms",
    "layer_zip_mb",
    "smart_layer_zip_mb",
    "ehr_calls_per_event",
    "ddb_round_trips_per_event",
    "e2e_ratio_at_ehr_latency",
    "cost_per_million_usd",
    "monthly_bill_usd",
    "chart_latency",
    "targets",
)
HANDLER_NAMES = ("ingest", "sync", "reconcile")
KINDS = ("new_booking", "update")
LATENCIES = ("0", "50", "150")

TARGETS: dict[str, dict[str, Any]] = {
    "intake_ratio": {"op": "<=", "value": 1.3, "label": "ingest handler CPU ÷ bare HMAC + parse + SQS send"},
    "cold_import_ms": {"op": "<=", "value": 250.0, "label": "cold import per handler, ms (without SnapStart)"},
    "layer_zip_mb": {"op": "<=", "value": 10.0, "label": "base Lambda layer, MB zipped"},
    "ehr_calls_per_event": {"op": "<=", "value": 2.0, "label": "EHR calls per event"},
    "ddb_round_trips_per_event": {"op": "<=", "value": 4.0, "label": "DynamoDB round trips per event (sync)"},
    "e2e_ratio_at_ehr_latency": {"op": ">=", "value": 0.8, "label": "bridge ÷ raw FHIR rate at 150 ms per EHR call"},
    "cost_per_million_usd": {"op": "<=", "value": 8.0, "label": "USD per 1M webhooks (REST API + WAF kept)"},
    "small_practice_month_usd": {
        "op": "<=",
        "value": 15.0,
        "label": "small practice's month, USD (prod without VPC, WAF kept; 1k bookings)",
    },
    "chart_latency_added_round_trips": {
        "op": "<=",
        "value": 1.0,
        "label": "webhook → chart: EHR round trips the bridge adds (p50 ≤ 1, p99 ≤ 3; 50, 150 ms and a burst)",
    },
}
PROFILES = ("small_practice", "clinic_group", "hospital")
VARIANTS = ("prod", "prod_vpc", "prod_vpc_one_nat")


def _met(name: str, value: float | None) -> bool | None:
    if value is None:
        return None
    target = TARGETS[name]
    return bool(value <= target["value"]) if target["op"] == "<=" else bool(value >= target["value"])


def _handler_key(module: str) -> str:
    return module.split(".")[1]


def build(*, smoke: bool = False, load: dict[str, Any] | None = None) -> dict[str, Any]:
    """The summary of the results in `results_dir()` (missing scripts leave their figures null)."""
    intake = read_result("intake") or {}
    coldstart = read_result("coldstart") or {}
    throughput = read_result("throughput") or {}
    cost = read_result("cost") or {}
    latency = read_result("latency") or {}

    imports = coldstart.get("imports") or {}
    cold = {_handler_key(module): figures.get("median_ms") for module, figures in imports.items()}
    assets = coldstart.get("assets") or {}
    layer = None if assets.get("skipped", True) else round(assets["layer"]["zipped_bytes"] / 1e6, 2)
    smart = None if assets.get("skipped", True) else round(assets["smart_layer"]["zipped_bytes"] / 1e6, 2)

    configs = throughput.get("configs") or [{}]
    by_latency: dict[str, Any] = configs[0].get("by_latency") or {}
    ratios = {
        latency: {kind: figures[kind]["share_of_raw"] for kind in KINDS} for latency, figures in by_latency.items()
    }
    reference = by_latency.get("0") or next(iter(by_latency.values()), None)
    ehr_calls = {kind: reference[kind]["ehr_calls_per_event"] for kind in KINDS} if reference else {}
    ddb_by_kind = {kind: reference[kind]["ddb_round_trips_per_event"] for kind in KINDS} if reference else {}
    ddb = max(ddb_by_kind.values()) if ddb_by_kind else None

    at_150 = ratios.get("150") or {}
    monthly = {
        variant: {
            profile: {
                "fixed": bill["fixed_usd"],
                "variable": bill["variable_usd"],
                "total": bill["total_usd"],
                "with_free_tier": round(bill["total_usd"] - bill["free_tier_credit_usd"], 2),
            }
            for profile, bill in by_profile.items()
        }
        for variant, by_profile in (cost.get("monthly") or {}).items()
    }
    small = (monthly.get("prod") or {}).get("small_practice") or {}
    chart = _chart_latency(latency)
    targets = {
        "intake_ratio": _met("intake_ratio", intake.get("ratio_cpu_mean")),
        "cold_import_ms": _met("cold_import_ms", max(cold.values())) if cold else None,
        "layer_zip_mb": _met("layer_zip_mb", layer),
        "ehr_calls_per_event": _met("ehr_calls_per_event", max(ehr_calls.values())) if ehr_calls else None,
        "ddb_round_trips_per_event": _met("ddb_round_trips_per_event", ddb),
        "e2e_ratio_at_ehr_latency": _met("e2e_ratio_at_ehr_latency", min(at_150.values())) if at_150 else None,
        "cost_per_million_usd": _met("cost_per_million_usd", cost.get("total_per_million")),
        "small_practice_month_usd": _met("small_practice_month_usd", small.get("total")),
        "chart_latency_added_round_trips": latency.get("met") if latency else None,
    }
    return {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "smoke": smoke,
        "machine": machine(),
        "load_average": load or {},
        "intake_ratio": intake.get("ratio_cpu_mean"),
        "cold_import_ms": cold,
        "layer_zip_mb": layer,
        "smart_layer_zip_mb": smart,
        "ehr_calls_per_event": ehr_calls,
        "ddb_round_trips_per_event": ddb,
        "ddb_round_trips_by_kind": ddb_by_kind,
        "e2e_ratio_at_ehr_latency": ratios,
        "e2e_events_per_s": {
            latency: {
                kind: {"bridge": figures[kind]["events_per_s"], "raw": figures[kind]["raw"]["events_per_s"]}
                for kind in KINDS
            }
            for latency, figures in by_latency.items()
        },
        "cost_per_million_usd": cost.get("total_per_million"),
        "cost_structural_floor_usd": cost.get("structural_floor_per_million"),
        "cost_protocol_floor_usd": cost.get("protocol_floor_per_million"),
        "prices_as_of": cost.get("prices_as_of"),
        "monthly_bill_usd": monthly,
        "vpc_premium_usd": {
            variant: {
                profile: round(monthly[variant][profile]["total"] - monthly["prod"][profile]["total"], 2)
                for profile in PROFILES
                if profile in monthly.get("prod", {}) and profile in monthly[variant]
            }
            for variant in VARIANTS[1:]
            if variant in monthly
        },
        "small_practice_usd_by_service": cost.get("small_practice_by_service"),
        "small_practice_standing_usd": cost.get("small_practice_standing"),
        "chart_latency": chart,
        "n_by_latency": throughput.get("n_by_latency"),
        "snapstart": coldstart.get("snapstart"),
        "targets": {name: {**TARGETS[name], "met": met} for name, met in targets.items()},
    }


def _chart_latency(latency: dict[str, Any]) -> dict[str, Any]:
    """Per EHR latency (and the burst): each kind's p50/p95/p99 (bridge and the EHR's own, ms) and the round
    trips the bridge adds at p50 and p99."""

    def figures(entry: dict[str, Any]) -> dict[str, Any]:
        return {
            "bridge_ms": {q: entry["bridge_ms"].get(q) for q in ("p50", "p95", "p99")},
            "ehr_own_ms": {q: entry["ehr_own_ms"].get(q) for q in ("p50", "p95", "p99")},
            "round_trip_ms": entry["round_trip_ms"],
            "added_round_trips": entry["added_round_trips"],
            "met": entry["met"],
        }

    found: dict[str, Any] = {}
    for ms, entry in (latency.get("by_latency") or {}).items():
        found[ms] = {kind: figures(entry[kind]) for kind in KINDS if kind in entry}
    burst = latency.get("burst_at_150") or {}
    if burst:
        found["burst"] = {"events": burst["events"], "new_booking": figures(burst["new_booking"])}
    return found


def load_average() -> dict[str, float]:
    one, five, fifteen = os.getloadavg()
    return {"1m": round(one, 2), "5m": round(five, 2), "15m": round(fifteen, 2)}


def write(summary: dict[str, Any], directory: Path | None = None) -> Path:
    path = (directory or results_dir()) / SUMMARY_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


@dataclass(frozen=True)
class Row:
    """One line of the headline table: what, the figure, the target, the verdict."""

    target: str
    figure: str
    goal: str
    verdict: str


def _num(value: object, digits: int = 2) -> str:
    if value is None:
        return "not measured"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _signed(value: object) -> str:
    return f"{value:+.2f}" if isinstance(value, int | float) else "not measured"


def _verdict(met: bool | None) -> str:
    return {True: "met", False: "missed", None: "not measured"}[met]


def rows(summary: dict[str, Any]) -> list[Row]:
    """The headline table of `summary` (the same rows in the terminal, the docs and the README)."""
    targets = summary["targets"]

    def goal(name: str) -> str:
        target = targets[name]
        return f"{'≤' if target['op'] == '<=' else '≥'} {target['value']:g}"

    def verdict(name: str) -> str:
        return _verdict(targets[name]["met"])

    cold = summary["cold_import_ms"]
    ehr = summary["ehr_calls_per_event"]
    ddb_kinds = summary.get("ddb_round_trips_by_kind") or {}
    ratios = summary["e2e_ratio_at_ehr_latency"]
    ratio_text = "; ".join(
        f"{latency} ms: new {figures['new_booking']:.2f}, update {figures['update']:.2f}"
        for latency, figures in ratios.items()
    )
    monthly = summary.get("monthly_bill_usd") or {}
    small = (monthly.get("prod") or {}).get("small_practice") or {}
    premium = ((summary.get("vpc_premium_usd") or {}).get("prod_vpc") or {}).get("small_practice")
    one_nat = ((summary.get("vpc_premium_usd") or {}).get("prod_vpc_one_nat") or {}).get("small_practice")
    chart = summary.get("chart_latency") or {}
    return [
        Row(
            TARGETS["intake_ratio"]["label"],
            f"{_num(summary['intake_ratio'])}x",
            goal("intake_ratio"),
            verdict("intake_ratio"),
        ),
        Row(
            TARGETS["cold_import_ms"]["label"],
            ", ".join(f"{name} {_num(ms, 0)}" for name, ms in cold.items()) or "not measured",
            goal("cold_import_ms"),
            verdict("cold_import_ms"),
        ),
        Row(
            TARGETS["layer_zip_mb"]["label"],
            f"{_num(summary['layer_zip_mb'])} (SMART layer {_num(summary['smart_layer_zip_mb'])})",
            goal("layer_zip_mb"),
            verdict("layer_zip_mb"),
        ),
        Row(
            TARGETS["ehr_calls_per_event"]["label"],
            ", ".join(f"{kind.replace('_', ' ')} {_num(value)}" for kind, value in ehr.items()) or "not measured",
            goal("ehr_calls_per_event"),
            verdict("ehr_calls_per_event"),
        ),
        Row(
            TARGETS["ddb_round_trips_per_event"]["label"],
            ", ".join(f"{kind.replace('_', ' ')} {_num(value)}" for kind, value in ddb_kinds.items()) or "not measured",
            goal("ddb_round_trips_per_event"),
            verdict("ddb_round_trips_per_event"),
        ),
        Row(
            TARGETS["e2e_ratio_at_ehr_latency"]["label"],
            ratio_text or "not measured",
            goal("e2e_ratio_at_ehr_latency"),
            verdict("e2e_ratio_at_ehr_latency"),
        ),
        Row(
            TARGETS["cost_per_million_usd"]["label"],
            f"${_num(summary['cost_per_million_usd'])} (floor ${_num(summary.get('cost_structural_floor_usd'))}; "
            f"with the write protocol's least writes ${_num(summary.get('cost_protocol_floor_usd'))})",
            goal("cost_per_million_usd"),
            verdict("cost_per_million_usd"),
        ),
        Row(
            TARGETS["small_practice_month_usd"]["label"],
            f"${_num(small.get('total'))} (fixed ${_num(small.get('fixed'))}; with VPC +${_num(premium)}, "
            f"one NAT +${_num(one_nat)})"
            if small
            else "not measured",
            goal("small_practice_month_usd"),
            verdict("small_practice_month_usd"),
        ),
        Row(
            TARGETS["chart_latency_added_round_trips"]["label"],
            _chart_text(chart) or "not measured",
            "p50 ≤ 1, p99 ≤ 3",
            verdict("chart_latency_added_round_trips"),
        ),
    ]


def _chart_text(chart: dict[str, Any]) -> str:
    parts = []
    for key, entry in chart.items():
        if key == "0":
            continue
        for kind in KINDS:
            if kind in entry:
                trips = entry[kind]["added_round_trips"]
                where = f"burst of {entry['events']}" if key == "burst" else f"{key} ms"
                parts.append(
                    f"{where} {kind.replace('_booking', '')}: {_signed(trips.get('p50'))} / {_signed(trips.get('p99'))}"
                )
    return "; ".join(parts)


PROFILE_LABELS = {
    "small_practice": "small practice (1k bookings/month, 3 providers)",
    "clinic_group": "clinic group (30k, 40 providers)",
    "hospital": "hospital (1M, 600 providers)",
}


def bill_rows(summary: dict[str, Any]) -> list[list[str]]:
    """The monthly bill of each profile: prod and prod with VPC, fixed + variable, and with the free tier."""
    monthly = summary.get("monthly_bill_usd") or {}
    rows = []
    for profile, label in PROFILE_LABELS.items():
        bills = [(monthly.get(variant) or {}).get(profile) for variant in VARIANTS]
        if not all(bills):
            continue
        rows.append(
            [
                label,
                *(f"${b['total']:.2f} (${b['fixed']:.2f} + ${b['variable']:.2f})" for b in bills if b),
                " / ".join(f"${b['with_free_tier']:.2f}" for b in bills if b),
            ]
        )
    return rows


#: What each service of the bill buys (the small practice's table).
PURPOSE = {
    "WAF": "the web ACL in front of the webhook and feed endpoints: body size, per-IP rate, AWS managed rules",
    "CloudWatch": "on-call alarms (per metric they read), the operations dashboard, the custom metrics emitted",
    "Lambda": "SnapStart for ingest and sync (no cold import on a webhook), the scheduled runs, the functions",
    "KMS": "the two customer managed keys (data, telemetry) and their requests",
    "Secrets Manager": "webhook signing, EHR credentials, Cal.com API key, pseudonymisation key",
    "per webhook": "everything one webhook makes happen (front door, queue, sync, audit, WORM copy, logs)",
    "SQS": "the queue's event source polling an idle queue",
    "AWS Backup": "daily (35 days) and monthly (a year) copies of every table",
    "DynamoDB": "storage and point-in-time recovery of what accumulates; the schedules' and feeds' requests",
    "CloudWatch Logs": "log storage (retention), data protection scans, the schedules' and feeds' logs",
    "S3": "the WORM audit copies and their access logs",
    "API Gateway": "the busy feed reads",
    "X-Ray": "1 % of the API's requests traced",
    "SSM": "the clinic mapping parameter",
    "VPC": "NAT gateways, their IPv4 addresses, interface endpoints (VPC mode only)",
}


def dollar_rows(summary: dict[str, Any]) -> list[list[str]]:
    """Where the small practice's month (prod, no VPC) goes, by service, largest first."""
    by_service = summary.get("small_practice_usd_by_service") or {}
    return [[service, f"${usd:.2f}", PURPOSE.get(service, "")] for service, usd in by_service.items() if usd >= 0.005]


def latency_rows(summary: dict[str, Any]) -> list[list[str]]:
    """Webhook → chart per EHR latency and kind: the bridge's and the EHR's own p50/p95/p99 (ms) and the
    round trips the bridge adds at p50 and p99."""
    rows = []
    for key, entry in (summary.get("chart_latency") or {}).items():
        where = f"burst of {entry['events']} at 150 ms" if key == "burst" else f"{key} ms"
        for kind in KINDS:
            figures = entry.get(kind)
            if not figures:
                continue
            bridge, own, trips = figures["bridge_ms"], figures["ehr_own_ms"], figures["added_round_trips"]
            rows.append(
                [
                    f"{where}, {kind.replace('_', ' ')}",
                    " / ".join(_num(bridge.get(q), 0) for q in ("p50", "p95", "p99")),
                    " / ".join(_num(own.get(q), 0) for q in ("p50", "p95", "p99")),
                    f"{_num(figures['round_trip_ms'], 1)}",
                    f"{_signed(trips.get('p50'))} / {_signed(trips.get('p99'))}",
                ]
            )
    return rows


BILL_HEADERS = [
    "profile",
    "prod: total (fixed + variable)",
    "prod with VPC",
    "prod with VPC, one NAT",
    "with the always-free tier (same order)",
]
DOLLAR_HEADERS = ["service", "USD/month", "what it buys"]
LATENCY_HEADERS = [
    "EHR latency, event",
    "bridge p50 / p95 / p99 ms",
    "EHR's own p50 / p95 / p99 ms",
    "round trip ms",
    "added round trips p50 / p99",
]


def print_table(summary: dict[str, Any]) -> None:
    table(
        ["target", "figure", "goal", "verdict"],
        [[row.target, row.figure, row.goal, row.verdict] for row in rows(summary)],
        title="Summary" + (" (smoke run: keys only, the figures mean nothing)" if summary.get("smoke") else ""),
    )
    table(BILL_HEADERS, bill_rows(summary), title="Monthly bill, USD (bench/results/cost.json has every line):")
    table(LATENCY_HEADERS, latency_rows(summary), title="Webhook → chart (from the audit records):")
    table(DOLLAR_HEADERS, dollar_rows(summary), title="The small practice's month (prod, no VPC), by service:")
