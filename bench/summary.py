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
}


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
    targets = {
        "intake_ratio": _met("intake_ratio", intake.get("ratio_cpu_mean")),
        "cold_import_ms": _met("cold_import_ms", max(cold.values())) if cold else None,
        "layer_zip_mb": _met("layer_zip_mb", layer),
        "ehr_calls_per_event": _met("ehr_calls_per_event", max(ehr_calls.values())) if ehr_calls else None,
        "ddb_round_trips_per_event": _met("ddb_round_trips_per_event", ddb),
        "e2e_ratio_at_ehr_latency": _met("e2e_ratio_at_ehr_latency", min(at_150.values())) if at_150 else None,
        "cost_per_million_usd": _met("cost_per_million_usd", cost.get("total_per_million")),
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
        "n_by_latency": throughput.get("n_by_latency"),
        "snapstart": coldstart.get("snapstart"),
        "targets": {name: {**TARGETS[name], "met": met} for name, met in targets.items()},
    }


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
    ]


def print_table(summary: dict[str, Any]) -> None:
    table(
        ["target", "figure", "goal", "verdict"],
        [[row.target, row.figure, row.goal, row.verdict] for row in rows(summary)],
        title="Summary" + (" (smoke run: keys only, the figures mean nothing)" if summary.get("smoke") else ""),
    )
