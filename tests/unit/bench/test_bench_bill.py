"""The monthly bill's pricing rules on small templates: what each kind of resource costs and where a line
says it comes from (the prices themselves are bench/prices.py's table)."""

from __future__ import annotations

from typing import Any

import pytest

from bench import bill
from bench.prices import HOURS_PER_MONTH, PRICE
from bench.stack_template import Template, runs_per_month

SMALL = bill.PROFILES[0]


def _bill(resources: dict[str, Any], census: dict[str, Any] | None = None) -> bill.Bill:
    return bill.bill(
        Template({"Resources": resources}), census or {}, SMALL, variant="t", per_webhook={}, item_bytes={}
    )


def _lines(one: bill.Bill, service: str) -> list[bill.Line]:
    return [line for line in one.lines if line.service == service]


def _stat(name: str, period: int = 300) -> dict[str, Any]:
    return {"Id": name, "MetricStat": {"Metric": {"MetricName": name, "Namespace": "N"}, "Period": period}}


def test_an_alarm_pays_for_every_metric_it_reads_and_a_fast_one_at_the_high_resolution_price() -> None:
    one = _bill(
        {
            "Plain": {"Type": "AWS::CloudWatch::Alarm", "Properties": {"MetricName": "Errors", "Period": 300}},
            "Rate": {
                "Type": "AWS::CloudWatch::Alarm",
                "Properties": {"Metrics": [_stat("a"), _stat("b"), _stat("c"), {"Id": "e", "Expression": "a/b"}]},
            },
            "Fast": {"Type": "AWS::CloudWatch::Alarm", "Properties": {"Metrics": [_stat("x", period=10)]}},
        }
    )
    standard, high = _lines(one, "CloudWatch")
    assert (standard.quantity, standard.usd) == (4, pytest.approx(4 * PRICE["cw_alarm_metric_month"].usd))
    assert "Plain" in standard.source and "Rate" in standard.source
    assert (high.quantity, high.price, high.source) == (
        1,
        "cw_high_res_alarm_metric_month",
        "AWS::CloudWatch::Alarm Fast",
    )


def test_interface_endpoints_pay_per_availability_zone_and_gateway_endpoints_nothing() -> None:
    one = _bill(
        {
            "Sqs": {
                "Type": "AWS::EC2::VPCEndpoint",
                "Properties": {"VpcEndpointType": "Interface", "SubnetIds": ["a", "b"], "ServiceName": "com.x.sqs"},
            },
            "S3": {
                "Type": "AWS::EC2::VPCEndpoint",
                "Properties": {"VpcEndpointType": "Gateway", "ServiceName": "com.x.s3"},
            },
        }
    )
    hours = {line.source: line for line in _lines(one, "VPC") if "data" not in line.item}
    assert hours["AWS::EC2::VPCEndpoint Sqs"].quantity == 2 * HOURS_PER_MONTH
    assert hours["AWS::EC2::VPCEndpoint Sqs"].usd == pytest.approx(2 * HOURS_PER_MONTH * 0.01)
    assert hours["AWS::EC2::VPCEndpoint S3"].usd == 0


def test_each_nat_gateway_pays_its_hours_and_its_public_address() -> None:
    one = _bill({"Nat": {"Type": "AWS::EC2::NatGateway"}, "Ip": {"Type": "AWS::EC2::EIP"}})
    hours = {line.price: line.usd for line in _lines(one, "VPC") if line.price.endswith("hour")}
    assert hours == {
        "nat_gateway_hour": pytest.approx(HOURS_PER_MONTH * 0.045),
        "public_ipv4_hour": pytest.approx(HOURS_PER_MONTH * 0.005),
    }


def test_a_snapstart_version_caches_its_functions_memory_all_month() -> None:
    one = _bill(
        {
            "Fn": {
                "Type": "AWS::Lambda::Function",
                "Properties": {
                    "MemorySize": 512,
                    "Architectures": ["arm64"],
                    "SnapStart": {"ApplyOn": "PublishedVersions"},
                    "Environment": {"Variables": {"POWERTOOLS_SERVICE_NAME": "ingest"}},
                },
            },
            "FnVersion": {"Type": "AWS::Lambda::Version", "Properties": {"FunctionName": {"Ref": "Fn"}}},
        }
    )
    (cache,) = [line for line in one.lines if line.price == "snapstart_cache_gb_second"]
    assert cache.quantity == pytest.approx(0.5 * HOURS_PER_MONTH * 3600) and "FnVersion of Fn" in cache.source


def test_schedules_run_as_often_as_their_expression_says() -> None:
    assert runs_per_month("rate(5 minutes)", HOURS_PER_MONTH) == pytest.approx(HOURS_PER_MONTH * 12)
    assert runs_per_month("rate(1 hour)", HOURS_PER_MONTH) == pytest.approx(HOURS_PER_MONTH)
    assert runs_per_month("cron(0 5 * * ? *)", HOURS_PER_MONTH) == pytest.approx(HOURS_PER_MONTH / 24)
    assert runs_per_month("cron(0 5 1 * ? *)", HOURS_PER_MONTH) == 1
    with pytest.raises(ValueError, match="unsupported"):
        runs_per_month("every tuesday", HOURS_PER_MONTH)


def test_a_metric_is_billed_for_the_hours_it_is_written_to() -> None:
    assert bill.billed_share(0) == 0
    assert bill.billed_share(1.0) == pytest.approx(0.632, abs=0.001)
    assert bill.billed_share(12) > 0.9999
    assert bill.cold_share(0.001, 10) == pytest.approx(1.0, abs=0.001)  # a quiet month: every call is cold
    assert bill.cold_share(3600, 10) == 0.005


def _function(service: str, lid: str) -> dict[str, Any]:
    variables = {"POWERTOOLS_SERVICE_NAME": service, "POWERTOOLS_METRICS_NAMESPACE": "CalEhrBridge/prod"}
    return {lid: {"Type": "AWS::Lambda::Function", "Properties": {"Environment": {"Variables": variables}}}}


def _emitted(metric: str, **values: str) -> dict[str, Any]:
    names = sorted(["service", *values])
    return {"metric": metric, "dimensions": names, "values": values, "emitted": 1}


def test_metrics_are_read_from_the_census_and_priced_by_how_often_they_are_written() -> None:
    census = {
        "activities": {
            "webhook: new booking": {"functions": {"sync": _usage([_emitted("EventApplied")])}},
            "webhook: breaks a warn rule": {
                "functions": {"sync": _usage([_emitted("RuleViolation", rule="lead_time")])}
            },
            "availability: full sweep": {"functions": {"availability": _usage([_emitted("AvailabilityFeedsSynced")])}},
            "webhook: wrong signature (failure)": {"functions": {"ingest": _usage([_emitted("SignatureRejected")])}},
        }
    }
    resources = {
        **_function("sync", "SyncFn"),
        **_function("availability", "AvailFn"),
        **_function("ingest", "IngestFn"),
        "AvailRule": {
            "Type": "AWS::Events::Rule",
            "Properties": {
                "ScheduleExpression": "rate(5 minutes)",
                "Targets": [{"Arn": {"Fn::GetAtt": ["AvailFn", "Arn"]}}],
            },
        },
    }
    lines = {line.item.split(" (")[0]: line for line in bill.metric_lines(_context(resources, census))}
    applied = lines["custom metric EventApplied"]
    assert applied.part == "variable" and 0 < applied.quantity < 1  # 1k bookings: not every hour
    assert "EventApplied {service=sync} from SyncFn" in applied.source
    sweeps = lines["custom metric AvailabilityFeedsSynced"]  # emitted by the full sweep only: once an hour
    assert sweeps.part == "fixed" and sweeps.quantity == pytest.approx(1 - 2.718281828**-1)
    rule = lines["custom metric RuleViolation"]
    assert "rule=<each of 2 rules in use>" in rule.source and rule.quantity < 2 * 0.1
    assert (
        lines["custom metric SignatureRejected"].quantity == 0
        and "only on failures" in lines["custom metric SignatureRejected"].note
    )


def _usage(metrics: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "invocations": 1,
        "cpu_ms": 1.0,
        "wall_ms": 1.0,
        "calls": {},
        "ddb_wru": 0,
        "ddb_rru": 0,
        "bytes": {},
        "log_bytes": 0,
        "log_lines": 0,
        "metrics": metrics,
    }


def _context(resources: dict[str, Any], census: dict[str, Any]) -> bill.Context:
    return bill.Context(Template({"Resources": resources}), census, SMALL, bill.Traffic(), {}, {})
