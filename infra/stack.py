"""The Cal EHR Bridge stack: composes the capability constructs and publishes the operator outputs."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from constructs import Construct

from infra.acknowledgments import acknowledge_findings
from infra.constants import CALCOM_API_BASE_URL
from infra.constructs.api import WebhookApi
from infra.constructs.archive import AuditArchiveBucket, AuditArchiver
from infra.constructs.availability import Availability
from infra.constructs.backup import Backups
from infra.constructs.console import ConsoleWidgets
from infra.constructs.ehr_access import clinic_config_source
from infra.constructs.ingest import Ingest
from infra.constructs.keys import Keys
from infra.constructs.lambdas import Lambdas
from infra.constructs.monitoring import MonitoredResources, Monitoring
from infra.constructs.network import Network
from infra.constructs.operators import OperatorRoles
from infra.constructs.queue import Queues
from infra.constructs.reconcile import Reconcile
from infra.constructs.secrets import Secrets
from infra.constructs.sync import Sync
from infra.constructs.tables import Tables
from infra.deployment import DeploymentConfig
from infra.version import VERSION, VERSION_TAG
from shared.contracts import deployment as out


class BridgeStack(cdk.Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig, **kwargs: Any) -> None:
        super().__init__(
            scope,
            construct_id,
            description=f"Cal EHR Bridge ({config.stage}): Cal.com webhooks to FHIR R4 appointments",
            termination_protection=config.is_prod,
            # a stack tag (CloudFormation also puts it on every resource that takes tags) and an output
            tags={VERSION_TAG: VERSION},
            **kwargs,
        )
        self.config = config
        #: The stage file this synth read (`infra.app.build_app`), or None.
        self.deploy_settings: Any = None
        self.keys = Keys(self, "Keys", config=config)
        self.network = (
            Network(self, "Network", config=config, telemetry_key=self.keys.telemetry_key) if config.vpc else None
        )
        self.tables = Tables(self, "Tables", config=config, key=self.keys.data_key)
        self.queues = Queues(self, "Queues", config=config, key=self.keys.data_key)
        self.secrets = Secrets(self, "Secrets", config=config, key=self.keys.data_key)
        self.archive = AuditArchiveBucket(self, "AuditArchive", config=config, key=self.keys.data_key)
        #: How every function is built (layers, roles, log groups); each capability below writes its own spec.
        self.functions = Lambdas(
            self, "Functions", config=config, keys=self.keys, queues=self.queues, network=self.network
        )
        self.ingest = Ingest(self, "Ingest", lambdas=self.functions, queues=self.queues, secrets=self.secrets)
        self.sync = Sync(
            self,
            "Sync",
            config=config,
            lambdas=self.functions,
            queues=self.queues,
            tables=self.tables,
            secrets=self.secrets,
        )
        self.reconcile = Reconcile(
            self,
            "Reconcile",
            config=config,
            lambdas=self.functions,
            queues=self.queues,
            tables=self.tables,
            secrets=self.secrets,
        )
        self.archiver = AuditArchiver(
            self, "Archiver", lambdas=self.functions, tables=self.tables, archive=self.archive, queues=self.queues
        )
        self.api = WebhookApi(
            self, "WebhookApi", config=config, handler=self.ingest.live, telemetry_key=self.keys.telemetry_key
        )
        self.availability = Availability(
            self,
            "Availability",
            config=config,
            key=self.keys.data_key,
            lambdas=self.functions,
            secrets=self.secrets,
            api=self.api.api,
        )
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            config=config,
            telemetry_key=self.keys.telemetry_key,
            resources=MonitoredResources(
                api=self.api.api,
                ingest=self.ingest.function,
                sync=self.sync.function,
                reconcile=self.reconcile.function,
                archive=self.archiver.function,
                events_queue=self.queues.events,
                dead_letter_queue=self.queues.dead_letter_queue,
                function_failures=self.queues.function_failures,
                web_acl=self.api.web_acl,
                availability=self.availability.sync,
                feed=self.availability.feed,
            ),
        )
        self.operators = OperatorRoles(
            self,
            "Operators",
            config=config,
            keys=self.keys,
            tables=self.tables,
            queues=self.queues,
            secrets=self.secrets,
            functions=self.functions,
            sync=self.sync,
            monitoring=self.monitoring,
            api=self.api,
            availability=self.availability,
        )
        # Only the sync function (audit records of events) and the operators who change things (records
        # of their actions) may append to the audit trail; nobody may rewrite it. On-call may not append.
        self.tables.protect_audit_trail(
            [self.sync.role.role_arn, self.operators.admin.role_arn, *config.operator_role_arns],
        )
        self.console = ConsoleWidgets(
            self,
            "OperationsConsole",
            lambdas=self.functions,
            tables=self.tables,
            dashboard=self.monitoring.dashboard,
        )
        self.backups = Backups(
            self, "Backups", config=config, key=self.keys.data_key, tables=(*self.tables.all, self.availability.table)
        )
        self.keys.allow_backup(self.backups.selection.grant_principal)

        cdk.Tags.of(self).add("Project", "CalEhrBridge")
        cdk.Tags.of(self).add("Stage", config.stage)
        cdk.Tags.of(self).add("DataClassification", "PHI")
        self._outputs()
        acknowledge_findings(self)

    def logical_id_of(self, construct: Any) -> str:
        """The CloudFormation logical id of an L2 construct's resource (as cdk-nag names it in findings)."""
        return str(self.resolve(construct.node.default_child.logical_id))

    def _outputs(self) -> None:
        outputs = {
            "BridgeVersion": (VERSION, "Cal EHR Bridge version of this deployment (CHANGELOG.md before upgrading)"),
            out.OUTPUT_WEBHOOK_URL: (
                self.api.webhook_url,
                "Register this URL in Cal.com (Settings > Developer > Webhooks)",
            ),
            out.OUTPUT_WEBHOOK_SECRET: (
                self.secrets.webhook_secret.secret_name,
                "Cal.com signing secrets {current, previous}",
            ),
            out.OUTPUT_EHR_AUTH_SECRET: (
                self.secrets.ehr_auth_secret.secret_name,
                "EHR credentials for the sync function",
            ),
            out.OUTPUT_CALCOM_API_SECRET: (
                self.secrets.calcom_api_secret.secret_name,
                'Cal.com API v2 key for the reconcile function {"api_key": "..."}',
            ),
            out.OUTPUT_PSEUDONYM_SECRET: (
                self.secrets.pseudonym_secret.secret_name,
                "Generated pseudonymisation key: never change or delete it",
            ),
            out.OUTPUT_QUEUE_URL: (self.queues.events.queue_url, "FIFO queue of booking events"),
            out.OUTPUT_DLQ_URL: (self.queues.dead_letter_queue.queue_url, "Events that exhausted the retry budget"),
            "FunctionFailureQueueUrl": (self.queues.function_failures.queue_url, "Failed async Lambda invocations"),
            out.OUTPUT_STATE_TABLE: (self.tables.state.table_name, "Lineage state"),
            out.OUTPUT_REVIEW_TABLE: (self.tables.review.table_name, "Events parked for human review"),
            out.OUTPUT_AUDIT_TABLE: (self.tables.audit.table_name, "Append-only audit trail"),
            "AuditArchiveBucketName": (
                self.archive.bucket.bucket_name,
                "WORM copy of the audit trail (S3 Object Lock, COMPLIANCE)",
            ),
            "IngestFunctionName": (self.ingest.function.function_name, "Ingest Lambda (logs, configuration)"),
            out.OUTPUT_SYNC_FUNCTION: (self.sync.function.function_name, "Sync Lambda (logs, configuration)"),
            "ReconcileFunctionName": (
                self.reconcile.function.function_name,
                "Scheduled reconcile Lambda (logs, manual runs)",
            ),
            "ArchiveFunctionName": (
                self.archiver.function.function_name,
                "Audit archive Lambda (audit table stream -> WORM bucket)",
            ),
            "ReconcileScheduleName": (
                self.reconcile.schedule.rule_name,
                "EventBridge rule that runs reconcile (disable it to pause reconciliation)",
            ),
            out.OUTPUT_AVAILABILITY_TABLE: (self.availability.table.table_name, "Busy feeds and their URL tokens"),
            out.OUTPUT_AVAILABILITY_FUNCTION: (
                self.availability.sync.function_name,
                "Scheduled availability Lambda (EHR-first appointments -> busy feeds; roster check)",
            ),
            "FeedFunctionName": (self.availability.feed.function_name, "Busy feed Lambda (GET /feeds/{token})"),
            out.OUTPUT_FEED_BASE_URL: (
                self.availability.feed_base_url,
                "Base of every busy feed URL (calehr availability feed-url prints the full URL)",
            ),
            "AvailabilityScheduleName": (
                self.availability.schedule.rule_name,
                "EventBridge rule that runs availability (disable it to freeze the feeds)",
            ),
            "BackupVaultName": (self.backups.vault.backup_vault_name, "AWS Backup vault (retained on delete)"),
            "AlarmTopicArn": (self.monitoring.topic.topic_arn, "On-call SNS topic (subscribe more endpoints here)"),
            "OnCallCheckAlarmName": (
                self.monitoring.dead_letter_alarm.alarm_name,
                "Alarm to set to ALARM by hand after a deploy: on-call must get its e-mail",
            ),
            "DashboardName": (self.monitoring.dashboard.dashboard_name, "CloudWatch dashboard"),
            out.OUTPUT_OPERATOR_READ_ONLY_ROLE: (
                self.operators.read_only.role_arn,
                "On-call role for calehr (review list/show without bodies, audit, queue depths, sync status)",
            ),
            out.OUTPUT_OPERATOR_ADMIN_ROLE: (
                self.operators.admin.role_arn,
                "Operator role for calehr changes (retry, discard, redrive, pause/resume, --with-body, mapping)",
            ),
            "ConsoleFunctionArn": (
                self.console.function.function_arn,
                "Operations console widgets: viewers need lambda:InvokeFunction on it",
            ),
            # What `calehr doctor --stack` and `calehr reconcile --stack` need besides the resources above.
            out.OUTPUT_EHR_BASE_URL: (self.config.ehr_base_url, "FHIR R4 base URL of the default EHR"),
            out.OUTPUT_EHR_PROFILE: (
                self.config.ehr_profile,
                "Write dialect of the default EHR (generic, healthlake, oracle)",
            ),
            out.OUTPUT_CALCOM_API_BASE_URL: (
                CALCOM_API_BASE_URL,
                "Cal.com API v2 base URL the reconcile function calls",
            ),
            out.OUTPUT_CLINIC_CONFIG_SOURCE: (
                clinic_config_source(self.config, self.secrets),
                "Where sync reads the clinic mapping (ssm: or appconfig:)",
            ),
        }
        if self.secrets.clinic_config is not None:  # absent when the mapping comes from AppConfig
            outputs["ClinicConfigParameterName"] = (
                self.secrets.clinic_config.parameter_name,
                "SSM parameter with the clinic mapping",
            )
        if self.secrets.ehr_route_secrets:
            outputs["EhrRouteSecretNames"] = (
                self.to_json_string(
                    {name: secret.secret_name for name, secret in self.secrets.ehr_route_secrets.items()}
                ),
                "EHR credentials secret of each extra EHR route (JSON: route name -> secret name)",
            )
            outputs[out.OUTPUT_EHR_ROUTES] = (
                self.to_json_string(
                    {
                        route.name: {
                            "base_url": route.base_url,
                            "profile": route.profile,
                            "auth_secret_name": self.secrets.ehr_route_secrets[route.name].secret_name,
                        }
                        for route in self.config.ehr_routes
                    }
                ),
                "Each extra EHR route (JSON: route name -> base_url, profile, auth_secret_name)",
            )
        for output_id, (value, description) in outputs.items():
            cdk.CfnOutput(self, output_id, value=value, description=description)
