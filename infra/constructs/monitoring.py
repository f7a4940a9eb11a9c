"""On-call: a KMS-encrypted SNS topic, the pipeline's alarms and a CloudWatch dashboard.

Every alarm notifies the topic when it fires and when it recovers. docs/deploy.md, "Alarms",
says what each one means for whoever is on call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import DeploymentConfig
from infra.constants import (
    ALARM_PERIOD_MINUTES,
    INGEST_METRICS,
    INGEST_SERVICE,
    METRICS_NAMESPACE,
    OLDEST_MESSAGE_AGE_ALARM_SECONDS,
    RECONCILE_ALARM_METRICS,
    RECONCILE_METRICS,
    RECONCILE_SERVICE,
    SIGNATURE_REJECTED_SPIKE_PER_5_MIN,
    SYNC_METRICS,
    SYNC_SERVICE,
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


@dataclass(frozen=True)
class MonitoredResources:
    api: apigw.RestApi
    ingest: lambda_.Function
    sync: lambda_.Function
    reconcile: lambda_.Function
    events_queue: sqs.Queue
    dead_letter_queue: sqs.Queue
    function_failures: sqs.Queue


def app_metric(service: str, name: str, *, statistic: str = "Sum") -> cloudwatch.Metric:
    """A custom metric emitted by Powertools Metrics (EMF) with its default `service` dimension."""
    return cloudwatch.Metric(
        namespace=METRICS_NAMESPACE,
        metric_name=name,
        dimensions_map={"service": service},
        statistic=statistic,
        period=_PERIOD,
    )


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
        self.dashboard = self._build_dashboard(stack.stack_name)

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
    ) -> cloudwatch.Alarm:
        # Alarm text goes to e-mail and pagers: it names the symptom and the runbook, never PHI.
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            metric=metric,
            threshold=threshold,
            comparison_operator=comparison,
            evaluation_periods=evaluation_periods,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=f"{description} Runbook: docs/deploy.md#alarms ({construct_id}).",
        )
        action = cw_actions.SnsAction(self.topic)
        alarm.add_alarm_action(action)
        alarm.add_ok_action(action)
        self.alarms.append(alarm)
        return alarm

    def _build_alarms(self) -> None:
        r = self._resources
        self._alarm(
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
            metric=app_metric(INGEST_SERVICE, "SignatureRejected"),
            threshold=SIGNATURE_REJECTED_SPIKE_PER_5_MIN,
            description="Many webhooks failed signature verification: a secret mismatch or probing.",
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
                metric=app_metric(RECONCILE_SERVICE, name),
                threshold=0,
                comparison=_GT,
                description=_RECONCILE_ALARM_TEXT[name],
            )
        self._alarm(
            "ReviewParked",
            metric=app_metric(SYNC_SERVICE, "ReviewParked"),
            threshold=0,
            comparison=_GT,
            description="Events were parked for human review (unmapped type, ambiguous patient, EHR rejection).",
        )
        self._alarm(
            "ClinicConfigRejected",
            metric=app_metric(SYNC_SERVICE, "ClinicConfigRejected"),
            threshold=0,
            comparison=_GT,
            description="A changed clinic mapping was rejected (invalid or unreadable); sync keeps using the "
            "last good one until it is fixed.",
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
            _graph("Ingest outcomes", [app_metric(INGEST_SERVICE, name) for name in INGEST_METRICS]),
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
            _graph("Sync outcomes", [app_metric(SYNC_SERVICE, name) for name in SYNC_METRICS]),
        )
        dashboard.add_widgets(
            _graph("Reconcile outcomes", [app_metric(RECONCILE_SERVICE, name) for name in RECONCILE_METRICS]),
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
        return dashboard


def _graph(
    title: str, left: Sequence[cloudwatch.IMetric], *, right: Sequence[cloudwatch.IMetric] = ()
) -> cloudwatch.GraphWidget:
    return cloudwatch.GraphWidget(title=title, left=list(left), right=list(right), width=12, height=6)
