"""The Cal EHR Bridge stack: composes the capability constructs and publishes the operator outputs."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from constructs import Construct

from infra.acknowledgments import acknowledge_findings
from infra.config import DeploymentConfig
from infra.constants import CALCOM_API_BASE_URL
from infra.constructs.api import WebhookApi
from infra.constructs.archive import AuditArchiveBucket
from infra.constructs.availability import Availability
from infra.constructs.backup import Backups
from infra.constructs.console import ConsoleWidgets
from infra.constructs.functions import Functions
from infra.constructs.keys import Keys
from infra.constructs.monitoring import MonitoredResources, Monitoring
from infra.constructs.network import Network
from infra.constructs.operators import OperatorRoles
from infra.constructs.queue import Queues
from infra.constructs.secrets import Secrets
from infra.constructs.tables import Tables
from infra.version import VERSION, VERSION_TAG


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
        self.functions = Functions(
            self,
            "Functions",
            config=config,
            keys=self.keys,
            queues=self.queues,
            tables=self.tables,
            secrets=self.secrets,
            archive=self.archive,
            network=self.network,
        )
        self.api = WebhookApi(
            self, "WebhookApi", config=config, handler=self.functions.ingest_live, telemetry_key=self.keys.telemetry_key
        )
        self.availability = Availability(
            self,
            "Availability",
            config=config,
            key=self.keys.data_key,
            functions=self.functions,
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
                ingest=self.functions.ingest,
                sync=self.functions.sync,
                reconcile=self.functions.reconcile,
                archive=self.functions.archive,
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
            monitoring=self.monitoring,
            api=self.api,
            availability=self.availability,
        )
        # Only the sync function (audit records of events) and the operators who change things (records
        # of their actions) may append to the audit trail; nobody may rewrite it. On-call may not append.
        self.tables.protect_audit_trail(
            [self.functions.roles["sync"].role_arn, self.operators.admin.role_arn, *config.operator_role_arns],
        )
        self.console = ConsoleWidgets(
            self,
            "OperationsConsole",
            functions=self.functions,
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
            "WebhookUrl": (self.api.webhook_url, "Register this URL in Cal.com (Settings > Developer > Webhooks)"),
            "WebhookSecretName": (
                self.secrets.webhook_secret.secret_name,
                "Cal.com signing secrets {current, previous}",
            ),
            "EhrAuthSecretName": (self.secrets.ehr_auth_secret.secret_name, "EHR credentials for the sync function"),
            "CalcomApiSecretName": (
                self.secrets.calcom_api_secret.secret_name,
                'Cal.com API v2 key for the reconcile function {"api_key": "..."}',
            ),
            "PseudonymSecretName": (
                self.secrets.pseudonym_secret.secret_name,
                "Generated pseudonymisation key: never change or delete it",
            ),
            "QueueUrl": (self.queues.events.queue_url, "FIFO queue of booking events"),
            "DeadLetterQueueUrl": (self.queues.dead_letter_queue.queue_url, "Events that exhausted the retry budget"),
            "FunctionFailureQueueUrl": (self.queues.function_failures.queue_url, "Failed async Lambda invocations"),
            "StateTableName": (self.tables.state.table_name, "Lineage state"),
            "ReviewTableName": (self.tables.review.table_name, "Events parked for human review"),
            "AuditTableName": (self.tables.audit.table_name, "Append-only audit trail"),
            "AuditArchiveBucketName": (
                self.archive.bucket.bucket_name,
                "WORM copy of the audit trail (S3 Object Lock, COMPLIANCE)",
            ),
            "IngestFunctionName": (self.functions.ingest.function_name, "Ingest Lambda (logs, configuration)"),
            "SyncFunctionName": (self.functions.sync.function_name, "Sync Lambda (logs, configuration)"),
            "ReconcileFunctionName": (
                self.functions.reconcile.function_name,
                "Scheduled reconcile Lambda (logs, manual runs)",
            ),
            "ArchiveFunctionName": (
                self.functions.archive.function_name,
                "Audit archive Lambda (audit table stream -> WORM bucket)",
            ),
            "ReconcileScheduleName": (
                self.functions.reconcile_schedule.rule_name,
                "EventBridge rule that runs reconcile (disable it to pause reconciliation)",
            ),
            "AvailabilityTableName": (self.availability.table.table_name, "Busy feeds and their URL tokens"),
            "AvailabilityFunctionName": (
                self.availability.sync.function_name,
                "Scheduled availability Lambda (EHR-first appointments -> busy feeds; roster check)",
            ),
            "FeedFunctionName": (self.availability.feed.function_name, "Busy feed Lambda (GET /feeds/{token})"),
            "FeedBaseUrl": (
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
            "OperatorReadOnlyRoleArn": (
                self.operators.read_only.role_arn,
                "On-call role for calehr (review list/show without bodies, audit, queue depths, sync status)",
            ),
            "OperatorAdminRoleArn": (
                self.operators.admin.role_arn,
                "Operator role for calehr changes (retry, discard, redrive, pause/resume, --with-body, mapping)",
            ),
            "ConsoleFunctionArn": (
                self.console.function.function_arn,
                "Operations console widgets: viewers need lambda:InvokeFunction on it",
            ),
            # What `calehr doctor --stack` and `calehr reconcile --stack` need besides the resources above.
            "EhrBaseUrl": (self.config.ehr_base_url, "FHIR R4 base URL of the default EHR"),
            "EhrProfile": (self.config.ehr_profile, "Write dialect of the default EHR (generic, healthlake, oracle)"),
            "CalcomApiBaseUrl": (CALCOM_API_BASE_URL, "Cal.com API v2 base URL the reconcile function calls"),
            "ClinicConfigSource": (
                self._clinic_config_source(),
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
            outputs["EhrRoutes"] = (
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

    def _clinic_config_source(self) -> str:
        """The sync function's CLINIC_CONFIG_SOURCE (the same rule as `Functions`)."""
        appconfig = self.config.clinic_config_appconfig
        if appconfig is not None:
            return appconfig.uri
        assert self.secrets.clinic_config is not None  # created whenever AppConfig is not the source
        return f"ssm:{self.secrets.clinic_config.parameter_name}"
