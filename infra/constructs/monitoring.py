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
from typing import Any

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

from infra.config import DeploymentConfig
from infra.constants import (
    ALARM_PERIOD_MINUTES,
    ARCHIVE_METRICS,
    ARCHIVE_SERVICE,
    AUDIT_ARCHIVE_MAX_LAG_SECONDS,
    AVAILABILITY_ALARM_METRICS,
    AVAILABILITY_METRICS,
    AVAILABILITY_SERVICE,
    EHR_PERMANENT_ERROR_RATE_PERCENT,
    EHR_PERMANENT_MIN_ERRORS,
    EHR_RETRYABLE_ERROR_RATE_PERCENT,
    EHR_RETRYABLE_EVALUATION_PERIODS,
    EHR_RETRYABLE_MIN_ERRORS,
    FEED_METRICS,
    FEED_SERVICE,
    INGEST_METRICS,
    INGEST_SERVICE,
    OLDEST_MESSAGE_AGE_ALARM_SECONDS,
    RECONCILE_ALARM_METRICS,
    RECONCILE_METRICS,
    RECONCILE_SERVICE,
    REVIEW_BACKLOG_MAX_AGE_HOURS,
    REVIEW_BACKLOG_MAX_OPEN_ITEMS,
    REVIEW_BACKLOG_METRICS,
    RULE_DIMENSION,
    RULE_VIOLATION_METRIC,
    SIGNATURE_MISMATCH_WINDOW_MINUTES,
    SIGNATURE_REJECTED_SPIKE_PER_5_MIN,
    SYNC_METRICS,
    SYNC_OUTCOME_METRICS,
    SYNC_SERVICE,
    WAF_BLOCKED_SPIKE_PER_5_MIN,
)

_PERIOD = cdk.Duration.minutes(ALARM_PERIOD_MINUTES)
_GTE = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
_GT = cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD

#: What each reconcile metric alarm (> 0) tells on-call.
_RECONCILE_ALARM_TEXT = {
    "ReconcileFailed": "A reconcile run failed on AWS: the Cal.com API key secret is unset or invalid, "
    "or DynamoDB/SQS failed.",
    "ReconcileApiError": "A reconcile run failed calling the Cal.com API (wrong or revoked key, rate limit, outage).",
    "ReconcileDiverged": "Reconcile found bookings where the bridge is past Cal.com (e.g. cancelled in the EHR "
    "but active in Cal.com); a human must look.",
}


#: What each availability metric alarm (> 0) tells on-call.
_AVAILABILITY_ALARM_TEXT = {
    "AvailabilityFailed": "A busy feed could not be brought up to date from the EHR (EHR error, a mapped "
    "practitioner the EHR does not have); Cal.com keeps the last busy times it read.",
    "RosterDrift": "Cal.com's hosts, the clinic mapping and the EHR's Practitioners disagree (an unmapped host, "
    "a practitioner missing or inactive in the EHR, an NPI mismatch): bookings of that host will be parked.",
    "RosterCheckFailed": "The provider roster check could not ask Cal.com or the EHR (key, permission, outage).",
}


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
        dimensions_map={"service": service},
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

    def _metric(self, service: str, name: str, **kwargs: Any) -> cloudwatch.Metric:
        return app_metric(self._namespace, service, name, **kwargs)

    def _rule_violations(self) -> cloudwatch.MathExpression:
        """One line per booking rule: the rule is a dimension, so a search finds every rule that occurred."""
        schema = f"{{{self._namespace},{RULE_DIMENSION},service}}"
        return cloudwatch.MathExpression(
            expression=(
                f"SEARCH('{schema} MetricName=\"{RULE_VIOLATION_METRIC}\" service=\"{SYNC_SERVICE}\"', 'Sum', "
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
        self._alarm(
            "SignatureRejectedSpike",
            metric=self._metric(INGEST_SERVICE, "SignatureRejected"),
            threshold=SIGNATURE_REJECTED_SPIKE_PER_5_MIN,
            description="Many webhooks failed signature verification: a secret mismatch or probing.",
        )
        window = cdk.Duration.minutes(SIGNATURE_MISMATCH_WINDOW_MINUTES)
        self._alarm(
            "WebhookSecretMismatch",
            # Low-volume safe: one rejected delivery in a window with no verified one is enough.
            metric=cloudwatch.MathExpression(
                expression="IF(FILL(rejected, 0) > 0 AND FILL(verified, 0) == 0, 1, 0)",
                using_metrics={
                    "rejected": self._metric(INGEST_SERVICE, "SignatureRejected", period=window),
                    "verified": self._metric(INGEST_SERVICE, "SignatureVerified", period=window),
                },
                period=window,
                label="Rejected signatures while none was verified",
            ),
            threshold=1,
            description=f"Webhooks were rejected for their signature and none was verified in "
            f"{SIGNATURE_MISMATCH_WINDOW_MINUTES} minutes: the secret in Cal.com and the stack disagree "
            "(a botched rotation). Cal.com does not retry: those bookings are lost until re-sent.",
        )
        for name, function in ((INGEST_SERVICE, r.ingest), (SYNC_SERVICE, r.sync)):
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
        for name in RECONCILE_ALARM_METRICS:
            self._alarm(
                name,
                metric=self._metric(RECONCILE_SERVICE, name),
                threshold=0,
                comparison=_GT,
                description=_RECONCILE_ALARM_TEXT[name],
            )
        self._alarm(
            "ReviewParked",
            metric=self._metric(SYNC_SERVICE, "ReviewParked"),
            threshold=0,
            comparison=_GT,
            description="Events were parked for human review (unmapped type, ambiguous patient, EHR rejection).",
        )
        self._alarm(
            "ClinicConfigRejected",
            metric=self._metric(SYNC_SERVICE, "ClinicConfigRejected"),
            threshold=0,
            comparison=_GT,
            description="A changed clinic mapping was rejected (invalid or unreadable); sync keeps using the "
            "last good one until it is fixed.",
        )
        self._alarm(
            "DriftFound",
            metric=self._metric(SYNC_SERVICE, "DriftFound"),
            threshold=0,
            comparison=_GT,
            description="An EHR Appointment no longer says what the bridge projects and the bridge did not write "
            "that: someone changed or deleted it in the EHR. Run `calehr verify` to see which.",
        )
        self._build_ehr_alarms()
        self._build_availability_alarms()
        self._build_backlog_alarm()
        self._build_archive_alarms()
        if r.web_acl is not None:
            self._build_waf_alarm(r.web_acl)

    def _ehr_error_rate(self, error_metric: str, *, minimum: int) -> cloudwatch.MathExpression:
        """Percent of sync outcomes that were `error_metric`, 0 while fewer than `minimum` errors."""
        outcomes = {f"outcome{index}": name for index, name in enumerate(SYNC_OUTCOME_METRICS)}
        return cloudwatch.MathExpression(
            expression=(
                f"IF(FILL(errors, 0) >= {minimum}, 100 * FILL(errors, 0) / ({_filled_sum(list(outcomes))}), 0)"
            ),
            using_metrics={
                "errors": self._metric(SYNC_SERVICE, error_metric),
                **{metric_id: self._metric(SYNC_SERVICE, name) for metric_id, name in outcomes.items()},
            },
            period=_PERIOD,
            label=f"{error_metric} (% of sync outcomes)",
        )

    def _build_ehr_alarms(self) -> None:
        self._alarm(
            "EhrRetryableErrorRate",
            metric=self._ehr_error_rate("EhrRetryableError", minimum=EHR_RETRYABLE_MIN_ERRORS),
            threshold=EHR_RETRYABLE_ERROR_RATE_PERCENT,
            evaluation_periods=EHR_RETRYABLE_EVALUATION_PERIODS,
            description=f"At least {EHR_RETRYABLE_ERROR_RATE_PERCENT}% of sync messages hit an EHR timeout, "
            f"5xx or 429 for {EHR_RETRYABLE_EVALUATION_PERIODS * ALARM_PERIOD_MINUTES} minutes: the EHR is "
            "down or slow. Messages wait in the queue and are retried.",
        )
        self._alarm(
            "EhrPermanentErrorRate",
            metric=self._ehr_error_rate("EhrPermanentError", minimum=EHR_PERMANENT_MIN_ERRORS),
            threshold=EHR_PERMANENT_ERROR_RATE_PERCENT,
            description=f"At least {EHR_PERMANENT_ERROR_RATE_PERCENT}% of sync messages were refused by the "
            "EHR (4xx) and parked for review: credentials, permissions or what the EHR accepts changed.",
        )
        self._alarm(
            "EhrCircuitOpen",
            metric=self._metric(SYNC_SERVICE, "EhrCircuitOpened"),
            threshold=1,
            description="A sync container opened its EHR circuit breaker (consecutive EHR failures) and stopped "
            "calling the EHR for the cooldown; it stays firing while trials keep failing.",
        )

    def _build_availability_alarms(self) -> None:
        r = self._resources
        self._alarm(
            "EhrConflict",
            metric=self._metric(SYNC_SERVICE, "EhrConflict"),
            threshold=0,
            comparison=_GT,
            description="A Cal.com booking overlapped an appointment made first in the EHR (same practitioner or "
            "room): parked as ehr_conflict, or written and flagged (on_conflict: write_and_flag).",
        )
        if r.availability is None:
            return
        self._alarm(
            "AvailabilityErrors",
            metric=r.availability.metric_errors(period=_PERIOD, statistic="Sum"),
            threshold=1,
            description="The availability function failed or timed out: busy feeds are not being refreshed.",
        )
        for name in AVAILABILITY_ALARM_METRICS:
            self._alarm(
                name,
                metric=self._metric(AVAILABILITY_SERVICE, name),
                threshold=0,
                comparison=_GT,
                description=_AVAILABILITY_ALARM_TEXT[name],
            )

    def _build_backlog_alarm(self) -> None:
        period = self._backlog_period
        max_age_seconds = REVIEW_BACKLOG_MAX_AGE_HOURS * 3600
        open_items, oldest_age = REVIEW_BACKLOG_METRICS
        self._alarm(
            "ReviewBacklog",
            metric=cloudwatch.MathExpression(
                expression=(f"IF(open >= {REVIEW_BACKLOG_MAX_OPEN_ITEMS} OR oldest >= {max_age_seconds}, 1, 0)"),
                using_metrics={
                    "open": self._metric(RECONCILE_SERVICE, open_items, statistic="Maximum", period=period),
                    "oldest": self._metric(RECONCILE_SERVICE, oldest_age, statistic="Maximum", period=period),
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
            "AuditRecordChanged",
            metric=self._metric(ARCHIVE_SERVICE, "AuditRecordChanged"),
            threshold=0,
            comparison=_GT,
            description="An audit record was overwritten or deleted after it was written, which the bridge "
            "never does. Both versions are in the WORM archive; find out who did it (CloudTrail).",
        )
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
            _graph("Ingest outcomes", [self._metric(INGEST_SERVICE, name) for name in INGEST_METRICS]),
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
            _graph("Sync outcomes", [self._metric(SYNC_SERVICE, name) for name in SYNC_METRICS]),
        )
        dashboard.add_widgets(
            _graph("Booking rule violations, by rule (docs/configure-clinic.md)", [self._rule_violations()])
        )
        dashboard.add_widgets(
            _graph("Reconcile outcomes", [self._metric(RECONCILE_SERVICE, name) for name in RECONCILE_METRICS]),
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
                [
                    self._metric(RECONCILE_SERVICE, REVIEW_BACKLOG_METRICS[0], statistic="Maximum"),
                ],
                right=[self._metric(RECONCILE_SERVICE, REVIEW_BACKLOG_METRICS[1], statistic="Maximum")],
            ),
            _graph(
                "Audit archive (WORM copy)",
                [self._metric(ARCHIVE_SERVICE, name) for name in ARCHIVE_METRICS],
                right=[r.archive.metric("IteratorAge", period=_PERIOD, statistic="Maximum")],
            ),
        )
        dashboard.add_widgets(
            _graph(
                "Availability: busy feeds and roster",
                [self._metric(AVAILABILITY_SERVICE, name) for name in AVAILABILITY_METRICS],
            ),
            _graph("Busy feed requests", [self._metric(FEED_SERVICE, name) for name in FEED_METRICS]),
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
