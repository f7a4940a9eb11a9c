"""On-call: every alarm reaches the KMS-encrypted topic and CloudWatch may deliver it; the metrics the
alarms watch are the ones the code emits, in the stage's own namespace; every symptom has an alarm."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from typing import Any

import pytest

from infra import constants as c
from infra.constructs.monitoring import INFRASTRUCTURE_ALARMS
from infra.deployment import ConfigError, config_from_context
from shared.contracts import metrics as m
from tests.support.alarm_delivery import undeliverable_alarms
from tests.support.synth import REPO_ROOT, Synth

pytestmark = pytest.mark.infra

#: Every alarm of a deployment with WAF on, by construct id: one per metric declared with an alarm, and
#: the monitoring construct's alarms on AWS metrics and metric math.
ALARMS = {metric.alarm.name for metric in m.METRICS if metric.alarm} | set(INFRASTRUCTURE_ALARMS)
#: Where each service's metrics are emitted (the test below reads these files).
EMITTERS = {
    m.INGEST: ("functions/ingest/handler.py",),
    m.SYNC: (
        "functions/sync/handler.py",
        *(str(path.relative_to(REPO_ROOT)) for path in sorted((REPO_ROOT / "shared" / "sync").glob("*.py"))),
        "shared/ehr/breaker.py",
        "shared/clinic/source.py",
    ),
    m.RECONCILE: ("functions/reconcile/handler.py", "shared/reconcile/report.py", "shared/reconcile/reconciler.py"),
    m.ARCHIVE: ("functions/archive/handler.py", "shared/archive/worm_copy.py"),
    m.AVAILABILITY: ("functions/availability/handler.py", "shared/availability/scheduled_run.py"),
}
#: The declaration's name in shared/contracts/metrics.py, by metric name (what an emitter refers to).
CONSTANT = {metric.name: name for name, metric in vars(m).items() if isinstance(metric, m.Metric)}


def _emits(source: str, metric_name: str) -> bool:
    """Whether `source` refers to the metric's declaration (`m.EVENT_APPLIED`, never a string of its own)."""
    return re.search(rf"\bm\.{CONSTANT[metric_name]}\b", source) is not None


@pytest.fixture(params=["staging", "prod", "prod_vpc_no_waf", "routed"])
def synth(request: pytest.FixtureRequest) -> Synth:
    result: Synth = request.getfixturevalue(request.param)
    return result


def _alarms_by_name(synth: Synth) -> dict[str, dict[str, Any]]:
    """Alarm properties by construct id (the alarm's logical id starts with Monitoring<id>)."""
    alarms = synth.resources("AWS::CloudWatch::Alarm")
    by_name = {}
    for alarm in synth.stack.monitoring.alarms:
        logical_id = synth.logical_id(alarm)
        by_name[alarm.node.id] = alarms[logical_id]["Properties"]
    return by_name


def _watched(alarm: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(namespace, metric name, dimensions) of every metric an alarm reads, math expressions included."""
    if "MetricName" in alarm:
        dimensions = {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])}
        return [(alarm["Namespace"], alarm["MetricName"], dimensions)]
    watched = []
    for query in alarm["Metrics"]:
        if "MetricStat" in query:
            metric = query["MetricStat"]["Metric"]
            dimensions = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
            watched.append((metric["Namespace"], metric["MetricName"], dimensions))
    return watched


def _expression(alarm: dict[str, Any]) -> str:
    (expression,) = [q["Expression"] for q in alarm["Metrics"] if "Expression" in q]
    return str(expression)


def _app_metrics(synth: Synth) -> dict[str, set[str]]:
    """Metric names by service, of every alarm that reads the pipeline's own metrics."""
    namespace = synth.stack.config.metrics_namespace
    found: dict[str, set[str]] = defaultdict(set)
    for alarm in _alarms_by_name(synth).values():
        for metric_namespace, name, dimensions in _watched(alarm):
            if metric_namespace.startswith(c.METRICS_NAMESPACE):
                assert metric_namespace == namespace, name
                assert set(dimensions) == {"service"}, name
                found[dimensions["service"]].add(name)
    return found


# --- delivery ------------------------------------------------------------------------------------


def test_given_every_alarm_then_cloudwatch_may_publish_it_to_the_encrypted_topic(synth: Synth) -> None:
    assert undeliverable_alarms(synth.template_json) == []


def test_given_every_alarm_then_it_notifies_the_topic_when_firing_and_recovering(synth: Synth) -> None:
    topic = {"Ref": synth.logical_id(synth.stack.monitoring.topic)}
    alarms = synth.resources("AWS::CloudWatch::Alarm")
    assert len(alarms) == len(ALARMS) - (0 if synth.stack.config.waf else 1)
    for logical_id, alarm in alarms.items():
        assert alarm["Properties"]["AlarmActions"] == [topic], logical_id
        assert alarm["Properties"]["OKActions"] == [topic], logical_id


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        ("remove_allow", "does not let CloudWatch publish"),
        ("drop_one_alarm_arn", "does not let CloudWatch publish"),
        ("other_account", "does not let CloudWatch publish"),
        ("remove_key_statement", "does not let CloudWatch encrypt"),
        ("deny_all_publish", "denies the publish"),
        ("no_alarms", "nothing was checked"),
    ],
)
def test_given_a_broken_delivery_path_then_the_walk_reports_it(staging: Synth, broken: str, expected: str) -> None:
    template = copy.deepcopy(staging.template_json)
    resources = template["Resources"]
    (policy,) = [r for r in resources.values() if r["Type"] == "AWS::SNS::TopicPolicy"]
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    (allow,) = [s for s in statements if s["Effect"] == "Allow"]
    key = resources[staging.logical_id(staging.stack.keys.telemetry_key)]["Properties"]["KeyPolicy"]
    if broken == "remove_allow":
        statements.remove(allow)  # what enforce_ssl alone leaves: the Deny only
    elif broken == "drop_one_alarm_arn":
        allow["Condition"]["ArnEquals"]["aws:SourceArn"].pop()
    elif broken == "other_account":
        allow["Condition"]["StringEquals"]["aws:SourceAccount"] = "111122223333"
    elif broken == "remove_key_statement":
        key["Statement"] = [s for s in key["Statement"] if "Service" not in s["Principal"] or "logs" in str(s)]
    elif broken == "deny_all_publish":
        statements.append({"Effect": "Deny", "Principal": "*", "Action": "sns:Publish", "Resource": "*"})
    elif broken == "no_alarms":
        template["Resources"] = {k: v for k, v in resources.items() if v["Type"] != "AWS::CloudWatch::Alarm"}
    problems = undeliverable_alarms(template)
    assert problems, broken
    assert all(expected in problem for problem in problems), problems


def test_given_the_topic_policy_then_it_names_exactly_this_stacks_alarms(staging: Synth) -> None:
    (policy,) = staging.resources("AWS::SNS::TopicPolicy").values()
    (allow,) = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
    named = {arn["Fn::GetAtt"][0] for arn in allow["Condition"]["ArnEquals"]["aws:SourceArn"]}
    assert named == set(staging.resources("AWS::CloudWatch::Alarm"))
    assert allow["Action"] == "sns:Publish"


def test_given_the_post_deploy_check_then_an_output_names_the_alarm_to_fire(staging: Synth) -> None:
    output = staging.template_json["Outputs"]["OnCallCheckAlarmName"]
    alarm = staging.stack.monitoring.dead_letter_alarm
    assert output["Value"] == {"Ref": staging.logical_id(alarm)}  # an alarm's Ref is its name
    guide = (REPO_ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    assert 'aws cloudwatch set-alarm-state --alarm-name "$(out OnCallCheckAlarmName)"' in guide


def test_given_a_prod_stack_without_subscribers_then_synth_refuses() -> None:
    with pytest.raises(ConfigError, match="on-call subscribers"):
        config_from_context({"stage": "prod"})
    assert config_from_context(
        {"stage": "prod", "alarmHttpsUrl": "https://pager.example.org/x", "ehrBaseUrl": "https://ehr.example.org/r4"}
    ).is_prod
    assert not config_from_context({"stage": "staging"}).has_alarm_subscribers  # staging: a note only


def test_given_the_cdk_app_for_prod_without_subscribers_then_it_exits_with_the_reason(tmp_path: Any) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "infra.app"],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO_ROOT,
        env={**os.environ, "CDK_CONTEXT_JSON": json.dumps({"stage": "prod"}), "CDK_OUTDIR": str(tmp_path)},
    )
    assert result.returncode == 1
    assert "error: a prod stack needs on-call subscribers" in result.stderr
    assert "Traceback" not in result.stderr


def test_given_alarm_context_then_email_and_https_subscriptions_exist(staging: Synth, prod_vpc_no_waf: Synth) -> None:
    subscriptions = {
        (s["Properties"]["Protocol"], s["Properties"]["Endpoint"])
        for s in staging.resources("AWS::SNS::Subscription").values()
    }
    assert subscriptions == {("email", "oncall@example.org"), ("https", "https://pager.example.org/hook")}
    assert [s["Properties"]["Protocol"] for s in prod_vpc_no_waf.resources("AWS::SNS::Subscription").values()] == [
        "https"
    ]


# --- namespace, dimension and the code that emits ----------------------------------------------


def test_given_two_stages_then_their_metrics_and_alarms_never_share_a_namespace(staging: Synth, prod: Synth) -> None:
    assert staging.stack.config.metrics_namespace == "CalEhrBridge/staging"
    assert prod.stack.config.metrics_namespace == "CalEhrBridge/prod"
    for synth in (staging, prod):
        namespace = synth.stack.config.metrics_namespace
        for function in synth.stack.functions.all:
            env = synth.resources("AWS::Lambda::Function")[synth.logical_id(function)]["Properties"]["Environment"]
            assert env["Variables"]["POWERTOOLS_METRICS_NAMESPACE"] == namespace
        assert set(_app_metrics(synth)) == {m.INGEST, m.SYNC, m.RECONCILE, m.ARCHIVE, m.AVAILABILITY}


def test_given_each_service_then_the_emf_it_writes_is_what_its_alarms_read(staging: Synth) -> None:
    """Run shared.observability with each function's environment and compare its EMF with the alarms."""
    functions = {
        f["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]: f["Properties"]["Environment"][
            "Variables"
        ]
        for f in staging.resources("AWS::Lambda::Function").values()
        if "POWERTOOLS_SERVICE_NAME" in f["Properties"].get("Environment", {}).get("Variables", {})
    }
    program = (
        "import sys\n"
        "from shared.contracts.metrics import METRICS\n"
        "from shared.observability import count, metrics\n"
        "for metric in METRICS:\n"
        "    if metric.name in sys.argv[1:]:\n"
        "        count(metric)\n"
        "metrics.flush_metrics()\n"
    )
    for service, names in _app_metrics(staging).items():
        env = functions[service]
        result = subprocess.run(
            [sys.executable, "-c", program, *sorted(names)],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO_ROOT,
            env={
                **os.environ,
                "POWERTOOLS_METRICS_NAMESPACE": env["POWERTOOLS_METRICS_NAMESPACE"],
                "POWERTOOLS_SERVICE_NAME": env["POWERTOOLS_SERVICE_NAME"],
            },
        )
        (line,) = [line for line in result.stdout.splitlines() if '"_aws"' in line]
        emf = json.loads(line)
        (directive,) = emf["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == staging.stack.config.metrics_namespace, service
        assert directive["Dimensions"] == [["service"]], service
        assert emf["service"] == service
        assert {metric["Name"] for metric in directive["Metrics"]} == names


def test_given_the_alarms_then_each_app_metric_they_read_is_emitted_by_its_service(staging: Synth) -> None:
    for service, names in _app_metrics(staging).items():
        source = "\n".join((REPO_ROOT / path).read_text(encoding="utf-8") for path in EMITTERS[service])
        for name in names:
            # the declaration in the code that emits it (through count()/gauge(), a lookup table of
            # outcomes, or the reconciler's injected metric function), and declared for that service
            assert _emits(source, name), f"{service} never emits {name}"
            assert next(metric for metric in m.METRICS if metric.name == name).service == service


def test_given_the_sync_outcomes_then_the_error_rate_denominator_is_every_outcome_the_handler_counts() -> None:
    handler = "\n".join((REPO_ROOT / path).read_text(encoding="utf-8") for path in EMITTERS[m.SYNC][:-2])
    counted = set(re.findall(r"\bm\.(EVENT_[A-Z]+|REVIEW_PARKED|SYNC_RETRIED|DRIFT_CHECKED)\b", handler))
    assert counted == {CONSTANT[metric.name] for metric in m.SYNC_OUTCOMES}


def test_given_the_pipeline_then_each_symptom_has_an_alarm(staging: Synth, prod_vpc_no_waf: Synth) -> None:
    assert set(_alarms_by_name(staging)) == ALARMS
    assert set(_alarms_by_name(prod_vpc_no_waf)) == ALARMS - {"WafBlockedSpike"}
    alarms = _alarms_by_name(staging)
    watched = {name: {(ns, metric) for ns, metric, _ in _watched(alarm)} for name, alarm in alarms.items()}
    app = staging.stack.config.metrics_namespace
    assert watched["Ingest5xx"] == {("AWS/ApiGateway", "5XXError")}
    assert watched["DeadLetterMessages"] == {("AWS/SQS", "ApproximateNumberOfMessagesVisible")}
    assert watched["EhrCircuitOpen"] == {(app, "EhrCircuitOpened")}
    assert watched["AuditRecordChanged"] == {(app, "AuditRecordChanged")}
    assert watched["AuditArchiveLag"] == {("AWS/Lambda", "IteratorAge")}
    assert watched["ReviewBacklog"] == {(app, m.REVIEW_OPEN_ITEMS.name), (app, m.REVIEW_OLDEST_OPEN_AGE.name)}
    assert watched["WafBlockedSpike"] == {("AWS/WAFV2", "BlockedRequests")}


def test_given_the_signature_alarms_then_a_single_rejection_without_a_verified_delivery_pages(staging: Synth) -> None:
    alarms = _alarms_by_name(staging)
    spike = alarms["SignatureRejectedSpike"]
    assert m.SIGNATURE_REJECTED.alarm is not None
    assert spike["Threshold"] == m.SIGNATURE_REJECTED.alarm.threshold == 20
    mismatch = alarms["WebhookSecretMismatch"]
    assert _expression(mismatch) == "IF(FILL(rejected, 0) > 0 AND FILL(verified, 0) == 0, 1, 0)"
    queries = {q["Id"]: q for q in mismatch["Metrics"] if "MetricStat" in q}
    assert {q["MetricStat"]["Metric"]["MetricName"] for q in queries.values()} == {
        "SignatureRejected",
        "SignatureVerified",
    }
    for query in queries.values():
        assert query["MetricStat"]["Period"] == c.SIGNATURE_MISMATCH_WINDOW_MINUTES * 60
        assert query["MetricStat"]["Stat"] == "Sum"
    assert mismatch["Threshold"] == 1
    assert mismatch["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


def test_given_the_ehr_alarms_then_they_are_rates_of_all_sync_outcomes_independent_of_queue_age(staging: Synth) -> None:
    alarms = _alarms_by_name(staging)
    for name, error, minimum, rate in (
        ("EhrRetryableErrorRate", "EhrRetryableError", c.EHR_RETRYABLE_MIN_ERRORS, c.EHR_RETRYABLE_ERROR_RATE_PERCENT),
        ("EhrPermanentErrorRate", "EhrPermanentError", c.EHR_PERMANENT_MIN_ERRORS, c.EHR_PERMANENT_ERROR_RATE_PERCENT),
    ):
        alarm = alarms[name]
        metrics = {ns_name for _, ns_name, _ in _watched(alarm)}
        assert metrics == {error, *(metric.name for metric in m.SYNC_OUTCOMES)}, name
        assert "ApproximateAgeOfOldestMessage" not in metrics
        expression = _expression(alarm)
        assert expression.startswith(f"IF(FILL(errors, 0) >= {minimum}, 100 * FILL(errors, 0) / ("), expression
        assert alarm["Threshold"] == rate
    assert alarms["EhrRetryableErrorRate"]["EvaluationPeriods"] == c.EHR_RETRYABLE_EVALUATION_PERIODS


def test_given_the_review_backlog_then_the_reconcile_gauges_page_when_too_many_or_too_old(
    staging: Synth, synth_config: Any
) -> None:
    backlog = _alarms_by_name(staging)["ReviewBacklog"]
    assert _expression(backlog) == (
        f"IF(open >= {c.REVIEW_BACKLOG_MAX_OPEN_ITEMS} OR oldest >= {c.REVIEW_BACKLOG_MAX_AGE_HOURS * 3600}, 1, 0)"
    )
    for query in backlog["Metrics"]:
        if "MetricStat" in query:
            assert query["MetricStat"]["Stat"] == "Maximum"
            assert query["MetricStat"]["Period"] == 15 * 60  # one reconcile run per period
            assert query["MetricStat"]["Metric"]["Dimensions"] == [{"Name": "service", "Value": "reconcile"}]
    assert backlog["TreatMissingData"] == "ignore"  # a missed run says nothing about the backlog
    hourly = _alarms_by_name(synth_config(stage="staging", reconcileRate="rate(1 hour)"))["ReviewBacklog"]
    assert {q["MetricStat"]["Period"] for q in hourly["Metrics"] if "MetricStat" in q} == {3600}


def test_given_the_waf_then_blocked_requests_of_its_web_acl_page(staging: Synth) -> None:
    alarm = _alarms_by_name(staging)["WafBlockedSpike"]
    dimensions = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
    assert staging.stack.api.web_acl is not None
    web_acl = staging.stack.resolve(staging.stack.api.web_acl.logical_id)
    assert dimensions["WebACL"] == {"Fn::Select": [0, {"Fn::Split": ["|", {"Ref": web_acl}]}]}
    assert dimensions["Rule"] == "ALL"
    assert dimensions["Region"] == {"Ref": "AWS::Region"}
    assert alarm["Threshold"] == c.WAF_BLOCKED_SPIKE_PER_5_MIN


def test_given_app_metric_alarms_then_missing_data_never_pages(staging: Synth) -> None:
    for name, alarm in _alarms_by_name(staging).items():
        assert alarm["TreatMissingData"] == ("ignore" if name == "ReviewBacklog" else "notBreaching"), name


def _table_alarms(section: str) -> list[str]:
    """The alarm names in the first column of a Markdown table (a row may name several)."""
    names: list[str] = []
    for line in section.splitlines():
        if line.startswith("| `"):
            names += re.findall(r"`([A-Za-z0-9]+)`", line.split("|")[1])
    return names


def test_given_every_alarm_then_the_deploy_guide_explains_it_and_the_readme_names_its_first_command(
    staging: Synth,
) -> None:
    """Both tables name exactly the alarms the stack builds, each once: none missing, none stale."""
    built = sorted(_alarms_by_name(staging))
    guide = (REPO_ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    alarms_section = guide[guide.index("## Alarms") : guide.index("## Post-deploy check")]
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    runbook = readme[readme.index("**When an alarm fires**") : readme.index("## What is not built yet")]
    for where, section in (("docs/deploy.md, Alarms", alarms_section), ("the README's runbook", runbook)):
        named = _table_alarms(section)
        assert sorted(named) == built, f"{where} names {sorted(set(named) ^ set(built))} differently"
    assert set(built) == ALARMS


def test_given_the_clinic_config_metrics_then_the_config_source_emits_exactly_those_names() -> None:
    source = (REPO_ROOT / "shared/clinic/source.py").read_text(encoding="utf-8")
    emitted = set(re.findall(r"count\(m\.(CLINIC_CONFIG_[A-Z]+)\)", source))
    assert emitted == {"CLINIC_CONFIG_REJECTED", "CLINIC_CONFIG_RELOADED"}
    assert {getattr(m, name).service for name in emitted} == {m.SYNC}


def test_given_the_dashboard_then_it_shows_every_app_metric(staging: Synth) -> None:
    (dashboard,) = staging.resources("AWS::CloudWatch::Dashboard").values()
    body = str(dashboard["Properties"]["DashboardBody"])
    assert len({metric.name for metric in m.METRICS}) == len(m.METRICS)
    # every metric but RuleViolation, which the dashboard searches by rule (tests/infra/test_infra_rules.py)
    names = [metric.name for metric in m.METRICS if metric.dimension is None]
    for name in names:
        assert f'\\"{name}\\"' in body or f'"{name}"' in body, name
    assert "CalEhrBridge/staging" in body


def test_given_the_reconcile_function_then_its_errors_and_metrics_page_on_call(staging: Synth) -> None:
    alarms = _alarms_by_name(staging)
    reconcile = {"Ref": staging.logical_id(staging.stack.reconcile.function)}
    assert alarms["ReconcileErrors"]["Dimensions"] == [{"Name": "FunctionName", "Value": reconcile}]
    assert alarms["ReconcileErrors"]["Threshold"] == 1
    paging = [metric for metric in m.of_service(m.RECONCILE) if metric.alarm]
    assert {metric.name for metric in paging} == {"ReconcileFailed", "ReconcileApiError", "ReconcileDiverged"}
    for metric in paging:
        assert metric.alarm is not None and metric.alarm.name == metric.name
        alarm = alarms[metric.name]
        assert alarm["Namespace"] == staging.stack.config.metrics_namespace
        assert alarm["Dimensions"] == [{"Name": "service", "Value": "reconcile"}]
        assert alarm["Threshold"] == 0
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold"


@pytest.mark.parametrize(
    ("path", "names"),
    [
        ("shared/reconcile/report.py", {"ReconcileChecked", "ReconcileEnqueued", "ReconcileSkippedOwn",
                                        "ReconcileDiverged", "ReconcileInvalidBooking", "ReconcileDriftChecks"}),
        ("functions/reconcile/handler.py", {"ReconcileApiError", "ReconcileCursorConflict", "ReconcileFailed"}),
    ],
)  # fmt: skip
def test_given_the_reconcile_metrics_then_the_code_emits_exactly_those_names(path: str, names: set[str]) -> None:
    source = (REPO_ROOT / path).read_text(encoding="utf-8")
    emitted = set(re.findall(r"\bm\.(RECONCILE_[A-Z_]+)\b", source))
    assert {getattr(m, name).name for name in emitted} == names
    assert names <= {metric.name for metric in m.of_service(m.RECONCILE)}
