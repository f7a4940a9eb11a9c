"""Queue, functions and their wiring follow the contract with the application code."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra import constants as c
from tests.support.synth import Synth

pytestmark = pytest.mark.infra


def _function(synth: Synth, name: str) -> dict[str, Any]:
    properties: dict[str, Any] = synth.resources("AWS::Lambda::Function")[
        synth.logical_id(getattr(synth.stack, "archiver" if name == "archive" else name).function)
    ]["Properties"]
    return properties


def test_given_the_events_queue_then_it_is_fifo_with_a_fifo_dlq_after_the_retry_budget(staging: Synth) -> None:
    queues = staging.resources("AWS::SQS::Queue")
    events = queues[staging.logical_id(staging.stack.queues.events)]["Properties"]
    dlq_id = staging.logical_id(staging.stack.queues.dead_letter_queue)
    assert events["FifoQueue"] is True
    assert events["ContentBasedDeduplication"] is False  # ingest sets the deduplication id
    assert events["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]},
        "maxReceiveCount": c.MAX_RECEIVE_COUNT,
    }
    assert events["VisibilityTimeout"] == 6 * c.SYNC_TIMEOUT_SECONDS
    assert queues[dlq_id]["Properties"]["FifoQueue"] is True


def test_given_the_retry_budget_then_a_twelve_hour_ehr_outage_does_not_dead_letter() -> None:
    # Worst case for the budget: every receive waits only the queue's visibility timeout.
    assert c.MAX_RECEIVE_COUNT * c.QUEUE_VISIBILITY_SECONDS >= c.MIN_RETRY_BUDGET_HOURS * 3600
    # With the sync function's backoff (base doubling to the cap) the budget only grows.
    waits = [min(c.RETRY_BACKOFF_BASE_SECONDS * 2**n, c.RETRY_BACKOFF_CAP_SECONDS) for n in range(c.MAX_RECEIVE_COUNT)]
    assert sum(waits) >= c.MIN_RETRY_BUDGET_HOURS * 3600
    # A message must outlive its own retry budget in the queue.
    assert (
        c.MAX_RECEIVE_COUNT * max(c.QUEUE_VISIBILITY_SECONDS, c.RETRY_BACKOFF_CAP_SECONDS)
        < c.QUEUE_RETENTION_DAYS * 86400
    )


def test_given_the_sync_function_then_its_backoff_is_the_one_the_budget_assumes(staging: Synth) -> None:
    """The budget above is computed from the contract's backoff; the sync function runs with exactly that:
    its settings default to those numbers and the stack sets no SYNC_BACKOFF_* override."""
    from shared.settings import SyncSettings

    fields = SyncSettings.model_fields
    assert (fields["backoff_base_seconds"].default, fields["backoff_cap_seconds"].default) == (
        c.RETRY_BACKOFF_BASE_SECONDS,
        c.RETRY_BACKOFF_CAP_SECONDS,
    )
    (sync,) = [
        f["Properties"]["Environment"]["Variables"]
        for f in staging.resources("AWS::Lambda::Function").values()
        if f["Properties"].get("Environment", {}).get("Variables", {}).get("POWERTOOLS_SERVICE_NAME") == "sync"
    ]
    assert not {name for name in sync if name.startswith("SYNC_BACKOFF_")}
    # SQS caps a single visibility extension at 12 h; the backoff stays far below.
    assert c.RETRY_BACKOFF_CAP_SECONDS <= 12 * 3600


def test_given_the_async_failure_queue_then_it_is_standard_and_every_function_uses_it(staging: Synth) -> None:
    failures_id = staging.logical_id(staging.stack.queues.function_failures)
    failures = staging.resources("AWS::SQS::Queue")[failures_id]["Properties"]
    assert "FifoQueue" not in failures
    for name in ("ingest", "sync", "reconcile", "archive"):
        assert _function(staging, name)["DeadLetterConfig"] == {"TargetArn": {"Fn::GetAtt": [failures_id, "Arn"]}}


def test_given_the_sync_event_source_then_partial_batches_and_bounded_concurrency(staging: Synth) -> None:
    staging.template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "EventSourceArn": {"Fn::GetAtt": [staging.logical_id(staging.stack.queues.events), "Arn"]},
            # the SnapStart alias (`<function name>:live`), never $LATEST (which SnapStart does not cover)
            "FunctionName": {
                "Fn::Join": [
                    "",
                    [
                        {
                            "Fn::Select": [
                                6,
                                {"Fn::Split": [":", {"Ref": staging.logical_id(staging.stack.sync.live)}]},
                            ]
                        },
                        f":{c.LIVE_ALIAS}",
                    ],
                ]
            },
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "ScalingConfig": {"MaximumConcurrency": c.SYNC_MAX_CONCURRENCY},
            "BatchSize": c.SYNC_BATCH_SIZE,
        },
    )
    # Lambda must never throttle the event source: reserved concurrency covers its maximum.
    assert _function(staging, "sync")["ReservedConcurrentExecutions"] >= c.SYNC_MAX_CONCURRENCY


@pytest.mark.parametrize("name", ["ingest", "sync", "reconcile", "archive"])
def test_given_a_function_then_python313_arm64_with_the_layer_and_its_handler(staging: Synth, name: str) -> None:
    function = _function(staging, name)
    assert function["Runtime"] == "python3.13"
    assert function["Architectures"] == ["arm64"]
    assert function["Handler"] == f"functions.{name}.handler.handler"
    assert function["Layers"] == [{"Ref": staging.logical_id(staging.stack.functions.layer)}]
    assert function["ReservedConcurrentExecutions"] >= 1
    assert function["LoggingConfig"]["LogGroup"] == {
        "Ref": staging.logical_id(staging.stack.functions.log_groups[name])
    }
    assert "TracingConfig" not in function or function["TracingConfig"]["Mode"] == "PassThrough"
    env = function["Environment"]["Variables"]
    assert env["POWERTOOLS_SERVICE_NAME"] == name
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "CalEhrBridge/staging"  # the alarms read the same
    assert env["LOG_LEVEL"] == "INFO"
    assert env["STAGE"] == "staging"


def test_given_the_ingest_function_then_its_environment_matches_the_contract(staging: Synth) -> None:
    env = _function(staging, "ingest")["Environment"]["Variables"]
    assert set(env) == {
        "POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "LOG_LEVEL", "STAGE",
        "QUEUE_URL", "WEBHOOK_SECRET_ARN", "MAX_BODY_BYTES",
    }  # fmt: skip
    assert env["QUEUE_URL"] == {"Ref": staging.logical_id(staging.stack.queues.events)}
    assert env["WEBHOOK_SECRET_ARN"] == {"Ref": staging.logical_id(staging.stack.secrets.webhook_secret)}
    assert env["MAX_BODY_BYTES"] == "262144"


def test_given_the_sync_function_then_its_environment_matches_the_contract(prod: Synth) -> None:
    env = _function(prod, "sync")["Environment"]["Variables"]
    tables = prod.stack.tables
    assert env["STATE_TABLE"] == {"Ref": prod.logical_id(tables.state)}
    assert "IDEMPOTENCY_TABLE" not in env  # duplicates are recognised by the lineage state itself
    assert env["REVIEW_TABLE"] == {"Ref": prod.logical_id(tables.review)}
    assert env["AUDIT_TABLE"] == {"Ref": prod.logical_id(tables.audit)}
    assert env["EHR_BASE_URL"] == "https://ehr.example.org/fhir"
    assert env["EHR_AUTH_SECRET_ARN"] == {"Ref": prod.logical_id(prod.stack.secrets.ehr_auth_secret)}
    assert env["PSEUDONYM_SECRET_ARN"] == {"Ref": prod.logical_id(prod.stack.secrets.pseudonym_secret)}
    assert env["CLINIC_CONFIG_SOURCE"] == {
        "Fn::Join": ["", ["ssm:", {"Ref": prod.logical_id(prod.stack.secrets.clinic_config)}]]
    }
    assert env["EHR_TIMEOUT_SECONDS"] == str(c.EHR_TIMEOUT_SECONDS)
    assert env["QUEUE_URL"] == {"Ref": prod.logical_id(prod.stack.queues.events)}
    assert env["REVIEW_BODY_RETENTION_DAYS"] == str(c.REVIEW_BODY_RETENTION_DAYS) == "30"
    assert c.EHR_TIMEOUT_SECONDS < c.SYNC_TIMEOUT_SECONDS
    # a batch still has room for several records after the time guard's reserve
    assert c.EHR_TIMEOUT_SECONDS + 5 < c.SYNC_TIMEOUT_SECONDS / 3


def test_given_the_tables_then_keys_ttl_and_on_demand_billing_match_the_contract(staging: Synth) -> None:
    tables = staging.resources("AWS::DynamoDB::Table")

    def props(table: Any) -> dict[str, Any]:
        result: dict[str, Any] = tables[staging.logical_id(table)]["Properties"]
        return result

    t = staging.stack.tables
    assert props(t.state)["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert props(t.review)["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    # Routing-form intake items expire; lineage items carry no `expires_at` and never do.
    assert props(t.state)["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    # Review items stay; only their bodies (`body#<id>` items) carry `expires_at`.
    assert props(t.review)["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert "TimeToLiveSpecification" not in props(t.audit)
    assert props(t.audit)["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    for table in tables.values():
        assert table["Properties"]["BillingMode"] == "PAY_PER_REQUEST"
        assert table["Properties"]["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


def test_given_the_tables_then_all_are_in_the_backup_plan(staging: Synth) -> None:
    (selection,) = staging.resources("AWS::Backup::BackupSelection").values()
    resources = selection["Properties"]["BackupSelection"]["Resources"]
    assert len(resources) == 4  # state, review, audit, availability
    for table in (*staging.stack.tables.all, staging.stack.availability.table):
        assert staging.logical_id(table) in str(resources)


def test_given_no_clinic_config_file_then_a_placeholder_that_fails_closed(staging: Synth) -> None:
    (parameter,) = staging.resources("AWS::SSM::Parameter").values()
    assert parameter["Properties"]["Type"] == "String"
    assert "unset: true" in parameter["Properties"]["Value"]


def test_given_the_ehr_placeholder_then_it_can_never_resolve(staging: Synth) -> None:
    assert _function(staging, "sync")["Environment"]["Variables"]["EHR_BASE_URL"].startswith("https://ehr.invalid/")


def test_given_the_reconcile_function_then_a_schedule_drives_it_one_run_at_a_time(staging: Synth) -> None:
    function = _function(staging, "reconcile")
    assert function["ReservedConcurrentExecutions"] == c.RECONCILE_RESERVED_CONCURRENCY == 1
    assert function["Timeout"] == c.RECONCILE_TIMEOUT_SECONDS == 300
    reconcile = staging.logical_id(staging.stack.reconcile.function)
    rule = staging.resources("AWS::Events::Rule")[staging.logical_id(staging.stack.reconcile.schedule)]
    assert rule["Properties"]["ScheduleExpression"] == c.DEFAULT_RECONCILE_RATE == "rate(15 minutes)"
    assert rule["Properties"]["State"] == "ENABLED"
    assert [t["Arn"] for t in rule["Properties"]["Targets"]] == [{"Fn::GetAtt": [reconcile, "Arn"]}]
    staging.template.has_resource_properties(
        "AWS::Lambda::Permission",
        {"Principal": "events.amazonaws.com", "FunctionName": {"Fn::GetAtt": [reconcile, "Arn"]}},
    )
    (invoke_config,) = [
        config
        for config in staging.resources("AWS::Lambda::EventInvokeConfig").values()
        if config["Properties"]["FunctionName"] == {"Ref": reconcile}
    ]
    assert 0 <= invoke_config["Properties"]["MaximumRetryAttempts"] <= 2
    assert invoke_config["Properties"]["MaximumEventAgeInSeconds"] == 15 * 60
    # runs never overlap: one at a time, and each ends before the next is due
    assert c.RECONCILE_TIMEOUT_SECONDS <= 15 * 60


def test_given_a_reconcile_rate_in_context_then_the_schedule_uses_it(synth_config: Any) -> None:
    synth: Synth = synth_config(stage="staging", reconcileRate="rate(1 hour)")
    rule = synth.resources("AWS::Events::Rule")[synth.logical_id(synth.stack.reconcile.schedule)]
    assert rule["Properties"]["ScheduleExpression"] == "rate(1 hour)"
    reconcile = {"Ref": synth.logical_id(synth.stack.reconcile.function)}
    (invoke_config,) = [
        config
        for config in synth.resources("AWS::Lambda::EventInvokeConfig").values()
        if config["Properties"]["FunctionName"] == reconcile
    ]
    assert invoke_config["Properties"]["MaximumEventAgeInSeconds"] == 3600


def test_given_the_reconcile_function_then_its_environment_matches_its_settings(prod: Synth) -> None:
    env = _function(prod, "reconcile")["Environment"]["Variables"]
    assert set(env) == {
        "POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "LOG_LEVEL", "STAGE",
        "QUEUE_URL", "STATE_TABLE", "CALCOM_API_SECRET_ARN", "CALCOM_API_BASE_URL",
        "RECONCILE_LOOKBACK_HOURS", "RECONCILE_MAX_RPS", "REVIEW_TABLE",
    }  # fmt: skip
    assert env["QUEUE_URL"] == {"Ref": prod.logical_id(prod.stack.queues.events)}
    assert env["STATE_TABLE"] == {"Ref": prod.logical_id(prod.stack.tables.state)}
    assert env["REVIEW_TABLE"] == {"Ref": prod.logical_id(prod.stack.tables.review)}
    assert env["CALCOM_API_SECRET_ARN"] == {"Ref": prod.logical_id(prod.stack.secrets.calcom_api_secret)}
    assert env["CALCOM_API_BASE_URL"] == "https://api.cal.com/v2"
    assert env["RECONCILE_LOOKBACK_HOURS"] == "24"
    assert env["RECONCILE_MAX_RPS"] == "2"
    assert env["STAGE"] == "prod"

    handler = pytest.importorskip("functions.reconcile.handler")
    fields = handler.ReconcileSettings.model_fields
    aliases = {field.alias for field in fields.values()}
    assert set(env) - {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "LOG_LEVEL"} <= aliases
    required = {field.alias for field in fields.values() if field.is_required()}
    assert required <= set(env)
    defaults = {field.alias: field.default for field in fields.values()}
    assert defaults["CALCOM_API_BASE_URL"] == env["CALCOM_API_BASE_URL"]
    assert defaults["RECONCILE_LOOKBACK_HOURS"] == float(env["RECONCILE_LOOKBACK_HOURS"])
    assert defaults["RECONCILE_MAX_RPS"] == float(env["RECONCILE_MAX_RPS"])
    # the run stops early, and saves its cursor, well before the timeout
    assert handler.SAFETY_MARGIN_MS < c.RECONCILE_TIMEOUT_SECONDS * 1000 / 4


def test_given_the_hot_path_then_snapstart_versions_behind_a_live_alias(staging: Synth) -> None:
    stack = staging.stack
    for name, live in (("ingest", stack.ingest.live), ("sync", stack.sync.live)):
        assert _function(staging, name)["SnapStart"] == {"ApplyOn": "PublishedVersions"}
        alias = staging.resources("AWS::Lambda::Alias")[staging.logical_id(live)]["Properties"]
        assert alias["Name"] == c.LIVE_ALIAS
        version_id = alias["FunctionVersion"]["Fn::GetAtt"][0]
        version = staging.resources("AWS::Lambda::Version")[version_id]["Properties"]
        assert version["FunctionName"] == {"Ref": staging.logical_id(getattr(stack, name).function)}
    for name in ("reconcile", "archive"):
        assert "SnapStart" not in _function(staging, name)
    # the webhook method invokes the ingest alias
    (method,) = [
        m["Properties"]
        for m in staging.resources("AWS::ApiGateway::Method").values()
        if m["Properties"]["HttpMethod"] == "POST"
    ]
    assert staging.logical_id(stack.ingest.live) in json.dumps(method["Integration"]["Uri"])


def test_given_snapstart_then_a_layer_change_publishes_a_new_version() -> None:
    """`shared/` ships in the layer: without this flag a change there would not publish a new version, and
    the `live` alias (all the API and the queue invoke) would keep running the old code."""
    context = json.loads((c.REPO_ROOT / "cdk.json").read_text(encoding="utf-8"))["context"]
    assert context["@aws-cdk/aws-lambda:recognizeLayerVersion"] is True
