"""`python -m bench --smoke`: every benchmark script still runs end to end (tiny N) and the summary has
every headline key. Figures of a smoke run are not asserted: only that they exist and are sane (the monthly
bills, the webhook → chart percentiles and the census of emitted metrics included)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.summary import HANDLER_NAMES, KINDS, LATENCIES, PROFILES, REQUIRED_KEYS, VARIANTS

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def test_bench_smoke_runs_every_script_and_writes_the_summary(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--results-dir", str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("intake", "coldstart", "throughput", "latency", "emf", "cost", "summary"):
        assert (tmp_path / f"{name}.json").is_file(), name
    summary = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert summary["smoke"] is True
    assert set(REQUIRED_KEYS) <= set(summary)
    assert summary["intake_ratio"] > 0
    assert set(summary["cold_import_ms"]) == set(HANDLER_NAMES)
    assert all(ms > 0 for ms in summary["cold_import_ms"].values())
    assert summary["layer_zip_mb"] is None  # the smoke run does not build the assets
    assert set(summary["ehr_calls_per_event"]) == set(KINDS)
    assert all(calls >= 1 for calls in summary["ehr_calls_per_event"].values())
    assert summary["ddb_round_trips_per_event"] >= 1
    assert set(summary["e2e_ratio_at_ehr_latency"]) == set(LATENCIES)
    for ratios in summary["e2e_ratio_at_ehr_latency"].values():
        assert set(ratios) == set(KINDS) and all(ratio > 0 for ratio in ratios.values())
    floors = summary["cost_protocol_floor_usd"], summary["cost_structural_floor_usd"]
    assert summary["cost_per_million_usd"] >= floors[0] > floors[1] > 0
    # every webhook of the smoke run was applied (a phase that timed out would say finished: false)
    throughput = json.loads((tmp_path / "throughput.json").read_text(encoding="utf-8"))
    for figures in throughput["configs"][0]["by_latency"].values():
        for kind in KINDS:
            assert figures[kind]["finished"] and figures[kind]["done"] == figures[kind]["n"]
    # a bill for every profile and template variant: fixed and variable parts, the fixed part never nothing
    for variant in VARIANTS:
        for profile in PROFILES:
            month = summary["monthly_bill_usd"][variant][profile]
            assert month["total"] == pytest.approx(month["fixed"] + month["variable"], abs=0.02)
            assert month["fixed"] > 0 and month["variable"] >= 0 and month["with_free_tier"] <= month["total"]
    assert (
        summary["vpc_premium_usd"]["prod_vpc"]["small_practice"]
        > summary["vpc_premium_usd"]["prod_vpc_one_nat"]["small_practice"]
        > 0
    )
    # webhook → chart at each EHR latency and in the burst, every event sent was measured
    chart = summary["chart_latency"]
    assert set(chart) == {*LATENCIES, "burst"}
    for entry in chart.values():
        for figures in (entry[kind] for kind in KINDS if kind in entry):
            assert 0 < figures["bridge_ms"]["p50"] <= figures["bridge_ms"]["p99"]
            assert 0 < figures["ehr_own_ms"]["p50"] <= figures["ehr_own_ms"]["p99"]
    latency = json.loads((tmp_path / "latency.json").read_text(encoding="utf-8"))
    for entry in latency["by_latency"].values():
        assert entry["applied"] == entry["sent"]
        assert entry["new_booking"]["bridge_ms"]["n"] == entry["new_booking"]["ehr_own_ms"]["n"]
    # the census saw every function emit, each metric with its service dimension
    census = json.loads((tmp_path / "emf.json").read_text(encoding="utf-8"))
    emitting = {f for a in census["activities"].values() for f, u in a["functions"].items() if u["metrics"]}
    assert emitting == {"ingest", "sync", "archive", "feed", "reconcile", "availability"}
    # the printed table is the summary's
    assert "Summary (smoke run" in result.stdout
