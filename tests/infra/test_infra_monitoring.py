"""On-call: every alarm reaches the KMS-encrypted topic; the expected symptoms are all covered."""

from __future__ import annotations

import re

import pytest
from synth_support import REPO_ROOT, Synth

from infra import constants as c

pytestmark = pytest.mark.infra


def test_given_every_alarm_then_it_notifies_the_topic_when_firing_and_recovering(staging: Synth) -> None:
    topic = {"Ref": staging.logical_id(staging.stack.monitoring.topic)}
    alarms = staging.resources("AWS::CloudWatch::Alarm")
    assert len(alarms) == 14
    for logical_id, alarm in alarms.items():
        assert alarm["Properties"]["AlarmActions"] == [topic], logical_id
        assert alarm["Properties"]["OKActions"] == [topic], logical_id
        assert alarm["Properties"]["TreatMissingData"] == "notBreaching"


def test_given_the_pipeline_then_each_symptom_has_an_alarm(staging: Synth) -> None:
    watched = {
        (a["Properties"]["Namespace"], a["Properties"]["MetricName"])
        for a in staging.resources("AWS::CloudWatch::Alarm").values()
    }
    assert watched == {
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),  # DLQ and async-failure queue
        ("AWS/SQS", "ApproximateAgeOfOldestMessage"),
        ("AWS/Lambda", "Errors"),
        ("AWS/Lambda", "Throttles"),
        ("AWS/ApiGateway", "5XXError"),
        (c.METRICS_NAMESPACE, "SignatureRejected"),
        (c.METRICS_NAMESPACE, "ReviewParked"),
        (c.METRICS_NAMESPACE, "ClinicConfigRejected"),
        (c.METRICS_NAMESPACE, "ReconcileFailed"),
        (c.METRICS_NAMESPACE, "ReconcileApiError"),
        (c.METRICS_NAMESPACE, "ReconcileDiverged"),
    }


def test_given_app_metric_alarms_then_they_use_the_powertools_service_dimension(staging: Synth) -> None:
    by_metric = {
        a["Properties"]["MetricName"]: a["Properties"] for a in staging.resources("AWS::CloudWatch::Alarm").values()
    }
    assert by_metric["SignatureRejected"]["Dimensions"] == [{"Name": "service", "Value": "ingest"}]
    assert by_metric["SignatureRejected"]["Threshold"] == c.SIGNATURE_REJECTED_SPIKE_PER_5_MIN
    assert by_metric["ReviewParked"]["Dimensions"] == [{"Name": "service", "Value": "sync"}]
    assert by_metric["ReviewParked"]["Threshold"] == 0
    assert by_metric["ReviewParked"]["ComparisonOperator"] == "GreaterThanThreshold"
    assert by_metric["ApproximateAgeOfOldestMessage"]["Threshold"] == c.OLDEST_MESSAGE_AGE_ALARM_SECONDS
    assert by_metric["ClinicConfigRejected"]["Dimensions"] == [{"Name": "service", "Value": "sync"}]
    assert by_metric["ClinicConfigRejected"]["Threshold"] == 0
    assert by_metric["ClinicConfigRejected"]["ComparisonOperator"] == "GreaterThanThreshold"


def test_given_the_clinic_config_metrics_then_the_config_source_emits_exactly_those_names() -> None:
    source = (REPO_ROOT / "shared/config/source.py").read_text(encoding="utf-8")
    emitted = set(re.findall(r"""count\(["'](ClinicConfig[A-Za-z]+)["']\)""", source))
    assert emitted == {"ClinicConfigRejected", "ClinicConfigReloaded"}
    assert emitted <= set(c.SYNC_METRICS)


def test_given_alarm_context_then_email_and_https_subscriptions_exist(staging: Synth, prod_vpc_no_waf: Synth) -> None:
    subscriptions = {
        (s["Properties"]["Protocol"], s["Properties"]["Endpoint"])
        for s in staging.resources("AWS::SNS::Subscription").values()
    }
    assert subscriptions == {("email", "oncall@example.org"), ("https", "https://pager.example.org/hook")}
    assert prod_vpc_no_waf.resources("AWS::SNS::Subscription") == {}


def test_given_the_dashboard_then_it_shows_every_app_metric(staging: Synth) -> None:
    (dashboard,) = staging.resources("AWS::CloudWatch::Dashboard").values()
    body = str(dashboard["Properties"]["DashboardBody"])
    for name in (*c.INGEST_METRICS, *c.SYNC_METRICS, *c.RECONCILE_METRICS):
        assert f'\\"{name}\\"' in body or f'"{name}"' in body, name


def test_given_the_reconcile_function_then_its_errors_and_metrics_page_on_call(staging: Synth) -> None:
    topic = {"Ref": staging.logical_id(staging.stack.monitoring.topic)}
    reconcile = {"Ref": staging.logical_id(staging.stack.functions.reconcile)}
    alarms = staging.resources("AWS::CloudWatch::Alarm").values()
    (errors,) = [
        a["Properties"]
        for a in alarms
        if a["Properties"]["MetricName"] == "Errors"
        and a["Properties"]["Dimensions"] == [{"Name": "FunctionName", "Value": reconcile}]
    ]
    assert errors["Threshold"] == 1
    assert errors["AlarmActions"] == [topic]
    by_metric = {a["Properties"]["MetricName"]: a["Properties"] for a in alarms}
    for name in c.RECONCILE_ALARM_METRICS:
        alarm = by_metric[name]
        assert alarm["Namespace"] == c.METRICS_NAMESPACE
        assert alarm["Dimensions"] == [{"Name": "service", "Value": "reconcile"}]
        assert alarm["Threshold"] == 0
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
        assert alarm["AlarmActions"] == [topic]
        assert alarm["OKActions"] == [topic]


@pytest.mark.parametrize(
    ("path", "names"),
    [
        ("shared/reconcile.py", {"ReconcileChecked", "ReconcileEnqueued", "ReconcileSkippedOwn", "ReconcileDiverged",
                                 "ReconcileInvalidBooking"}),
        ("functions/reconcile/handler.py", {"ReconcileApiError", "ReconcileCursorConflict", "ReconcileFailed"}),
    ],
)  # fmt: skip
def test_given_the_reconcile_metrics_then_the_code_emits_exactly_those_names(path: str, names: set[str]) -> None:
    source = (REPO_ROOT / path).read_text(encoding="utf-8")
    emitted = set(re.findall(r"""["'](Reconcile[A-Za-z]+)["']""", source))
    assert emitted == names
    assert names <= set(c.RECONCILE_METRICS)
    assert set(c.RECONCILE_ALARM_METRICS) <= set(c.RECONCILE_METRICS)
