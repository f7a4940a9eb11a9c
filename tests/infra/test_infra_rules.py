"""Booking-rule violations on the dashboard: the metric the sync writes (by rule) is the one it searches."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from shared.contracts import metrics as m
from tests.support.synth import REPO_ROOT, Synth

pytestmark = pytest.mark.infra


def test_given_the_dashboard_then_it_searches_rule_violations_by_rule_in_the_stage_namespace(staging: Synth) -> None:
    (dashboard,) = staging.resources("AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"]).replace("\\", "")  # one string, unescaped
    assert "Booking rule violations, by rule" in body
    assert (
        """SEARCH('{CalEhrBridge/staging,rule,service} MetricName="RuleViolation" service="sync"', 'Sum', 300)"""
        in body
    )


def test_given_the_sync_handler_then_it_counts_the_metric_and_dimension_the_dashboard_reads(staging: Synth) -> None:
    sync = next(
        f["Properties"]["Environment"]["Variables"]
        for f in staging.resources("AWS::Lambda::Function").values()
        if f["Properties"].get("Environment", {}).get("Variables", {}).get("POWERTOOLS_SERVICE_NAME") == "sync"
    )
    program = (
        "from shared.contracts.metrics import RULE_VIOLATION\n"
        "from shared.observability import count_by\n"
        "count_by(RULE_VIOLATION, 'min_duration')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
        env={
            **os.environ,
            "POWERTOOLS_METRICS_NAMESPACE": sync["POWERTOOLS_METRICS_NAMESPACE"],
            "POWERTOOLS_SERVICE_NAME": sync["POWERTOOLS_SERVICE_NAME"],
        },
    )
    (line,) = [line for line in result.stdout.splitlines() if '"_aws"' in line]
    emf = json.loads(line)
    (directive,) = emf["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "CalEhrBridge/staging"
    assert sorted(directive["Dimensions"][0]) == sorted([m.RULE_DIMENSION, "service"])
    assert [metric["Name"] for metric in directive["Metrics"]] == [m.RULE_VIOLATION.name]
    assert (emf["rule"], emf["service"]) == ("min_duration", "sync")
