"""On-call: a KMS-encrypted SNS topic, the pipeline's alarms and a CloudWatch dashboard.

Every alarm notifies the topic when it fires and when it recovers. docs/deploy.md, "Alarms",
says what each one means for whoever is on call; the README's Operations table names the first
command to run.

An SNS topic policy replaces SNS's default policy, and `enforce_ssl` creates one holding only the
TLS Deny: without an explicit allow, CloudWatch could not publish a single alarm. The topic policy
therefore allows `cloudwatch.amazonaws.com` to publish, only for this account (`aws:SourceAccount`)
and only for exactly this stack's alarms (`aws:SourceArn`, each alarm's ARN); the telemetry key
lets CloudWatch encrypt the message (`infra/constructs/keys.py`). A test walks every alarm action
to the topic, its policy and its key in the synthesized template.

The pipeline's own metrics live in the stage's namespace (`CalEhrBridge/<stage>`, dimension
`service`), the one the functions emit into, so staging never trips prod's alarms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from infra.constants import (
    ALARM_PERIOD_MINUTES,
    AUDIT_ARCHIVE_MAX_LAG_SECONDS,
    EHR_PERMANENT_ERROR_RATE_PERCENT,
    EHR_PERMANENT_MIN_ERRORS,
    EHR_RETRYABLE_ERROR_RATE_PERCENT,
    EHR_RETRYABLE_EVALUATION_PERIODS,
    EHR_RETRYABLE_MIN_ERRORS,
    OLDEST_MESSAGE_AGE_ALARM_SECONDS,
    REVIEW_BACKLOG_MAX_AGE_HOURS,
    REVIEW_BACKLOG_MAX_OPEN_ITEMS,
    SIGNATURE_MISMATCH_WINDOW_MINUTES,
    WAF_BLOCKED_SPIKE_PER_5_MIN,
)
from infra.deployment import DeploymentConfig
from shared.contracts import metrics as m

_PERIOD = cdk.Duration.minutes(ALARM_PERIOD_MINUTES)
_GTE = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
_GT = cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD

#: The alarms built here on AWS's own metrics or on metric math, besides one alarm per metric declared
#: with an `alarm` in `shared.contracts.metrics`. Every alarm is explained in docs/deploy.md, "Alarms",
#: and has a first command in the README's runbook (tests/infra check both against the template).
INFRASTRUCTURE_ALARMS = (
    "DeadLetterMessages",
    "FunctionFailureMessages",
    "OldestMessageAge",
    "SyncErrors",
    "Ingest5xx",
    "WebhookSecretMismatch",
    "IngestThrottles",
    "SyncThrottles",
    "ReconcileErrors",
    "EhrRetryableErrorRate",
    "EhrPermanentErrorRate",
    "ReviewBacklog",
    "ArchiveErrors",
    "AuditArchiveLag",
    "AvailabilityErrors",
    "WafBlockedSpike",  # with WAF only
)


@dataclass(frozen=True)
class MonitoredResources:
    api: apigw.RestApi
    ingest: lambda_.Function
    sync: lambda_.Function
    reconcile: lambda_.Function
    archive: lambda_.Function
    events_queue: sqs.Queue
    dead_letter_queue: sqs.Queue
    function_failures: sqs.Queue
    #: None with `-c waf=false`.
    web_acl: wafv2.CfnWebACL | None = None
    #: The scheduled availability function and the feed function (infra/constructs/availability.py).
    availability: lambda_.Function | None = None
    feed: lambda_.Function | None = None


def app_metric(
    namespace: str, service: str, name: str, *, statistic: str = "Sum", period: cdk.Duration = _PERIOD
) -> cloudwatch.Metric:
    """A custom metric emitted by Powertools Metrics (EMF) with its default `service` dimension."""
    return cloudwatch.Metric(
        namespace=namespace,
        metric_name=name,
        dimensions_map={m.SERVICE_DIMENSION: service},
        statistic=statistic,
        period=period,
    )


def _filled_sum(ids: Sequence[str]) -> str:
    return " + ".join(f"FILL({metric_id}, 0)" for metric_id in ids)


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        telemetry_key: kms.IKey,
        resources: MonitoredResources,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        self._resources = resources
        self._namespace = config.metrics_namespace
        #: Reconcile emits the review backlog gauges once per run: one period per run.
        self._backlog_period = cdk.Duration.minutes(min(max(config.reconcile_rate_minutes, 5), 24 * 60))

        self.topic = sns.Topic(
            self,
            "OnCallTopic",
            display_name=f"{stack.stack_name} on-call",
            master_key=telemetry_key,
            enforce_ssl=True,
        )
        for email in config.alarm_emails:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))
        for url in config.alarm_https_urls:
            self.topic.add_subscription(subscriptions.UrlSubscription(url, protocol=sns.SubscriptionProtocol.HTTPS))

        self.alarms: list[cloudwatch.Alarm] = []
        self._build_alarms()
        self._allow_alarms_to_publish()
        self.dashboard = self._build_dashboard(stack.stack_name)

    def _metric(self, metric: m.Metric, **kwargs: Any) -> cloudwatch.Metric:
        if metric.kind == "gauge":
            kwargs.setdefault("statistic", "Maximum")
        return app_metric(self._namespace, metric.service, metric.name, **kwargs)

    def _metrics(self, service: str, *, kind: Literal["count", "gauge"] | None = None) -> list[cloudwatch.IMetric]:
        """Every metric `service` emits (of one kind), as declared: a dashboard graph's lines."""
        return [self._metric(metric) for metric in m.of_service(service, kind=kind)]

    def _rule_violations(self) -> cloudwatch.MathExpression:
        """One line per booking rule: the rule is a dimension, so a search finds every rule that occurred."""
        rule = m.RULE_VIOLATION
        schema = f"{{{self._namespace},{rule.dimension},{m.SERVICE_DIMENSION}}}"
        return cloudwatch.MathExpression(
            expression=(
                f"SEARCH('{schema} MetricName=\"{rule.name}\" {m.SERVICE_DIMENSION}=\"{rule.service}\"', 'Sum', "
                f"{int(_PERIOD.to_seconds())})"
            ),
            label="",
            period=_PERIOD,
        )

    def _allow_alarms_to_publish(self) -> None:
        """The topic policy's allow for CloudWatch: this account, exactly these alarms."""
        stack = cdk.Stack.of(self)
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": stack.account},
                    "ArnEquals": {"aws:SourceArn": [alarm.alarm_arn for alarm in self.alarms]},
                },
            )
        )

    # --- alarms ----------------------------------------------------------------------------------

    def _alarm(
        self,
        construct_id: str,
        *,
        metric: cloudwatch.IMetric,
        threshold: float,
        description: str,
        comparison: cloudwatch.ComparisonOperator = _GTE,
        evaluation_periods: int = 1,
        missing: cloudwatch.TreatMissingData = cloudwatch.TreatMissingData.NOT_BREACHING,
    ) -> cloudwatch.Alarm:
        # Alarm text goes to e-mail and pagers: it names the symptom and the runbook, never PHI.
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            metric=metric,
            threshold=threshold,
            comparison_operator=comparison,
            evaluation_periods=evaluation_periods,
            treat_missing_data=missing,
            alarm_description=f"{description} Runbook: docs/deploy.md#alarms ({construct_id}).",
        )
        action = cw_actions.SnsAction(self.topic)
        alarm.add_alarm_action(action)
        alarm.add_ok_action(action)
        self.alarms.append(alarm)
        return alarm

    def _build_alarms(self) -> None:
        self._build_metric_alarms()
        self._build_queue_alarms()
        self._build_function_alarms()
        self._build_signature_alarm()
        self._build_ehr_alarms()
        self._build_backlog_alarm()
        self._build_archive_alarms()
        if self._resources.web_acl is not None:
            self._build_waf_alarm(self._resources.web_acl)

    def _build_metric_alarms(self) -> None:
        """One alarm per metric declared with one (`shared.contracts.metrics`): a threshold on its Sum."""
        for metric in m.METRICS:
            alarm = metric.alarm
            if alarm is None or (metric.service == m.AVAILABILITY and self._resources.availability is None):
                continue
            self._alarm(
                alarm.name,
                metric=self._metric(metric),
                threshold=alarm.threshold,
                comparison=_GTE if alarm.at_least else _GT,
                description=alarm.description,
            )

    def _build_queue_alarms(self) -> None:
        r = self._resources
        #: Fired by hand after a deploy to prove delivery (docs/deploy.md, "Post-deploy check").
        self.dead_letter_alarm = self._alarm(
            "DeadLetterMessages",
            metric=r.dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=cdk.Duration.minutes(1), statistic="Maximum"
            ),
            threshold=1,
            description="Booking events exhausted their retry budget and sit in the dead-letter queue.",
        )
        self._alarm(
            "FunctionFailureMessages",
            metric=r.function_failures.metric_approximate_number_of_messages_visible(
                period=cdk.Duration.minutes(1), statistic="Maximum"
            ),
            threshold=1,
            description="An asynchronous Lambda invocation failed and was dead-lettered.",
        )
        self._alarm(
            "OldestMessageAge",
            metric=r.events_queue.metric_approximate_age_of_oldest_message(period=_PERIOD, statistic="Maximum"),
            threshold=OLDEST_MESSAGE_AGE_ALARM_SECONDS,
            description="Booking events are waiting too long: the EHR is down or slow, or sync is failing.",
        )

    def _build_function_alarms(self) -> None:
        r = self._resources
        self._alarm(
            "SyncErrors",
            metric=r.sync.metric_errors(period=_PERIOD, statistic="Sum"),
            threshold=1,
            description="The sync function crashed or timed out (unhandled, not a per-message failure).",
        )
        self._alarm(
            "Ingest5xx",
            metric=r.api.metric_server_error(period=_PERIOD, statistic="Sum"),
            threshold=1,
            description="The webhook endpoint returned 5xx: Cal.com deliveries are failing.",
        )
        for name, function in ((m.INGEST, r.ingest), (m.SYNC, r.sync)):
            self._alarm(
                f"{name.capitalize()}Throttles",
                metric=function.metric_throttles(period=_PERIOD, statistic="Sum"),
                threshold=1,
                description=f"The {name} function was throttled (reserved concurrency exhausted).",
            )
        self._alarm(
            "ReconcileErrors",
            metric=r.reconcile.metric_errors(period=_PERIOD, statistic="Sum"),
            threshold=1,
            description="The reconcile function failed or timed out; missed webhooks are not being recovered.",
        )
        if r.availability is not None:
            self._alarm(
                "AvailabilityErrors",
                metric=r.availability.metric_errors(period=_PERIOD, statistic="Sum"),
                threshold=1,
                description="The availability function failed or timed out: busy feeds are not being refreshed.",
            )

    def _build_signature_alarm(self) -> None:
        window = cdk.Duration.minutes(SIGNATURE_MISMATCH_WINDOW_MINUTES)
        self._alarm(
            "WebhookSecretMismatch",
            # Low-volume safe: one rejected delivery in a window with no verified one is enough.
            metric=cloudwatch.MathExpression(
                expression="IF(FILL(rejected, 0) > 0 AND FILL(verified, 0) == 0, 1, 0)",
                using_metrics={
                    "rejected": self._metric(m.SIGNATURE_REJECTED, period=window),
                    "verified": self._metric(m.SIGNATURE_VERIFIED, period=window),
                },
                period=window,
                label="Rejected signatures while none was verified",
            ),
            threshold=1,
            description=f"Webhooks were rejected for their signature and none was verified in "
            f"{SIGNATURE_MISMATCH_WINDOW_MINUTES} minutes: the secret in Cal.com and the stack disagree "
            "(a botched rotation). Cal.com does not retry: those bookings are lost until re-sent.",
        )

    def _ehr_error_rate(self, error: m.Metric, *, minimum: int) -> cloudwatch.MathExpression:
        """Percent of sync outcomes that were `error`, 0 while fewer than `minimum` errors."""
        outcomes = {f"outcome{index}": metric for index, metric in enumerate(m.SYNC_OUTCOMES)}
        return cloudwatch.MathExpression(
            expression=(
                f"IF(FILL(errors, 0) >= {minimum}, 100 * FILL(errors, 0) / ({_filled_sum(list(outcomes))}), 0)"
            ),
            using_metrics={
                "errors": self._metric(error),
                **{metric_id: self._metric(metric) for metric_id, metric in outcomes.items()},
            },
            period=_PERIOD,
            label=f"{error.name} (% of sync outcomes)",
        )

    def _build_ehr_alarms(self) -> None:
        self._alarm(
            "EhrRetryableErrorRate",
            metric=self._ehr_error_rate(m.EHR_RETRYABLE_ERROR, minimum=EHR_RETRYABLE_MIN_ERRORS),
            threshold=EHR_RETRYABLE_ERROR_RATE_PERCENT,
            evaluation_periods=EHR_RETRYABLE_EVALUATION_PERIODS,
            description=f"At least {EHR_RETRYABLE_ERROR_RATE_PERCENT}% of sync messages hit an EHR timeout, "
            f"5xx or 429 for {EHR_RETRYABLE_EVALUATION_PERIODS * ALARM_PERIOD_MINUTES} minutes: the EHR is "
            "down or slow. Messages wait in the queue and are retried.",
        )
        self._alarm(
            "EhrPermanentErrorRate",
            metric=self._ehr_error_rate(m.EHR_PERMANENT_ERROR, minimum=EHR_PERMANENT_MIN_ERRORS),
            threshold=EHR_PERMANENT_ERROR_RATE_PERCENT,
            description=f"At least {EHR_PERMANENT_ERROR_RATE_PERCENT}% of sync messages were refused by the "
            "EHR (4xx) and parked for review: credentials, permissions or what the EHR accepts changed.",
        )

    def _build_backlog_alarm(self) -> None:
        period = self._backlog_period
        max_age_seconds = REVIEW_BACKLOG_MAX_AGE_HOURS * 3600
        self._alarm(
            "ReviewBacklog",
            metric=cloudwatch.MathExpression(
                expression=(f"IF(open >= {REVIEW_BACKLOG_MAX_OPEN_ITEMS} OR oldest >= {max_age_seconds}, 1, 0)"),
                using_metrics={
                    "open": self._metric(m.REVIEW_OPEN_ITEMS, period=period),
                    "oldest": self._metric(m.REVIEW_OLDEST_OPEN_AGE, period=period),
                },
                period=period,
                label="Review backlog over its limits",
            ),
            threshold=1,
            # The gauges come with each reconcile run; a missing run says nothing about the backlog.
            missing=cloudwatch.TreatMissingData.IGNORE,
            description=f"{REVIEW_BACKLOG_MAX_OPEN_ITEMS} or more review items are open, or one has been open "
            f"for {REVIEW_BACKLOG_MAX_AGE_HOURS} hours: bookings are waiting for a human and are not in the EHR.",
        )

    def _build_archive_alarms(self) -> None:
        r = self._resources
        self._alarm(
            "ArchiveErrors",
            metric=r.archive.metric_errors(period=_PERIOD, statistic="Sum"),
            threshold=1,
            description="The audit archive function failed: audit changes are not reaching the WORM bucket yet "
            "(they are retried from the stream for 24 hours).",
        )
        self._alarm(
            "AuditArchiveLag",
            metric=r.archive.metric("IteratorAge", period=_PERIOD, statistic="Maximum"),
            threshold=AUDIT_ARCHIVE_MAX_LAG_SECONDS * 1000,  # milliseconds
            description="The WORM archive trails the audit table by an hour or more; stream records are lost "
            "after 24 hours.",
        )

    def _build_waf_alarm(self, web_acl: wafv2.CfnWebACL) -> None:
        self._alarm(
            "WafBlockedSpike",
            metric=waf_blocked_requests(web_acl),
            threshold=WAF_BLOCKED_SPIKE_PER_5_MIN,
            description="WAF blocked many requests to the webhook endpoint: an attack, or WAF refusing Cal.com's "
            "own deliveries (which would lose bookings). Check the WAF logs.",
        )

    # --- dashboard -------------------------------------------------------------------------------

    def _build_dashboard(self, stack_name: str) -> cloudwatch.Dashboard:
        r = self._resources
        dashboard = cloudwatch.Dashboard(
            self, "Dashboard", default_interval=cdk.Duration.hours(6), period_override=cloudwatch.PeriodOverride.AUTO
        )
        dashboard.add_widgets(
            cloudwatch.TextWidget(
                markdown=(
                    f"# {stack_name}\nCal.com -> API Gateway -> ingest -> SQS FIFO -> sync -> EHR; "
                    "schedule -> reconcile (Cal.com API) -> SQS FIFO"
                ),
                width=24,
                height=2,
            )
        )
        dashboard.add_widgets(cloudwatch.AlarmStatusWidget(alarms=list(self.alarms), width=24, height=4))
        dashboard.add_widgets(
            _graph(
                "Webhook endpoint",
                [
                    r.api.metric_count(period=_PERIOD),
                    r.api.metric_client_error(period=_PERIOD),
                    r.api.metric_server_error(period=_PERIOD),
                ],
                right=[r.api.metric_latency(period=_PERIOD, statistic="p99")],
            ),
            _graph("Ingest outcomes", self._metrics(m.INGEST)),
        )
        dashboard.add_widgets(
            _graph(
                "Queue",
                [
                    r.events_queue.metric_approximate_number_of_messages_visible(period=_PERIOD),
                    r.events_queue.metric_approximate_number_of_messages_not_visible(period=_PERIOD),
                    r.dead_letter_queue.metric_approximate_number_of_messages_visible(period=_PERIOD),
                ],
                right=[r.events_queue.metric_approximate_age_of_oldest_message(period=_PERIOD, statistic="Maximum")],
            ),
            _graph("Sync outcomes", self._metrics(m.SYNC)),
        )
        dashboard.add_widgets(
            _graph("Booking rule violations, by rule (docs/configure-clinic.md)", [self._rule_violations()])
        )
        dashboard.add_widgets(
            _graph("Reconcile outcomes", self._metrics(m.RECONCILE, kind="count")),
            _graph(
                "Reconcile runs",
                [r.reconcile.metric_invocations(period=_PERIOD), r.reconcile.metric_errors(period=_PERIOD)],
                right=[r.reconcile.metric_duration(period=_PERIOD, statistic="Maximum")],
            ),
        )
        dashboard.add_widgets(
            _graph(
                "Functions: errors and throttles",
                [
                    metric
                    for function in (r.ingest, r.sync, r.reconcile)
                    for metric in (
                        function.metric_errors(period=_PERIOD),
                        function.metric_throttles(period=_PERIOD),
                    )
                ],
            ),
            _graph(
                "Functions: duration p99 and concurrency",
                [
                    function.metric_duration(period=_PERIOD, statistic="p99")
                    for function in (r.ingest, r.sync, r.reconcile)
                ],
                right=[
                    function.metric("ConcurrentExecutions", period=_PERIOD, statistic="Maximum")
                    for function in (r.ingest, r.sync, r.reconcile)
                ],
            ),
        )
        dashboard.add_widgets(
            _graph(
                "Review backlog (open items; age of the oldest, s)",
                [self._metric(m.REVIEW_OPEN_ITEMS)],
                right=[self._metric(m.REVIEW_OLDEST_OPEN_AGE)],
            ),
            _graph(
                "Audit archive (WORM copy)",
                self._metrics(m.ARCHIVE),
                right=[r.archive.metric("IteratorAge", period=_PERIOD, statistic="Maximum")],
            ),
        )
        dashboard.add_widgets(
            _graph(
                "Availability: busy feeds and roster",
                self._metrics(m.AVAILABILITY),
            ),
            _graph("Busy feed requests", self._metrics(m.FEED)),
        )
        if r.web_acl is not None:
            dashboard.add_widgets(_graph("WAF blocked requests", [waf_blocked_requests(r.web_acl)]))
        return dashboard


def waf_blocked_requests(web_acl: wafv2.CfnWebACL) -> cloudwatch.Metric:
    """Requests the web ACL blocked, all rules (`AWS/WAFV2`, regional: WebACL, Region, Rule=ALL)."""
    # A web ACL's Ref is "<name>|<id>|<scope>"; the metric is dimensioned by the name.
    return cloudwatch.Metric(
        namespace="AWS/WAFV2",
        metric_name="BlockedRequests",
        dimensions_map={
            "WebACL": cdk.Fn.select(0, cdk.Fn.split("|", web_acl.ref)),
            "Region": cdk.Stack.of(web_acl).region,
            "Rule": "ALL",
        },
        statistic="Sum",
        period=_PERIOD,
    )


def _graph(
    title: str, left: Sequence[cloudwatch.IMetric], *, right: Sequence[cloudwatch.IMetric] = ()
) -> cloudwatch.GraphWidget:
    return cloudwatch.GraphWidget(title=title, left=list(left), right=list(right), width=12, height=6)
