"""KMS customer-managed keys: one for PHI at rest, one for telemetry (logs and the on-call topic).

Two keys keep the blast radius small: the CloudWatch Logs and CloudWatch alarm service principals
may use the telemetry key only, never the key that protects booking payloads and EHR state.
Both keys rotate yearly. The account root statement that CDK adds is kept on purpose: without it a
key can become unmanageable; it delegates to IAM, where each role gets only the key actions it needs.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from infra.config import DeploymentConfig

_LOGS_KEY_ACTIONS = [
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:DescribeKey",
]


class Keys(Construct):
    """`data_key` encrypts queues, tables, secrets and backups; `telemetry_key` logs and SNS."""

    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig) -> None:
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        pending_window = cdk.Duration.days(30 if config.is_prod else 7)

        self.data_key = kms.Key(
            self,
            "DataKey",
            description=f"{stack.stack_name}: PHI at rest (SQS, DynamoDB, Secrets Manager, AWS Backup)",
            enable_key_rotation=True,
            pending_window=pending_window,
            removal_policy=config.removal_policy,
        )
        self.data_key.add_alias(f"alias/{stack.stack_name}/data")

        self.telemetry_key = kms.Key(
            self,
            "TelemetryKey",
            description=f"{stack.stack_name}: CloudWatch Logs and the on-call SNS topic",
            enable_key_rotation=True,
            pending_window=pending_window,
            removal_policy=config.removal_policy,
        )
        self.telemetry_key.add_alias(f"alias/{stack.stack_name}/telemetry")
        self._allow_cloudwatch_logs()
        self._allow_cloudwatch_alarms()

    def _allow_cloudwatch_logs(self) -> None:
        """CloudWatch Logs encrypts this account's and region's log groups, and nothing else."""
        stack = cdk.Stack.of(self)
        self.telemetry_key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchLogsEncryptLogGroups",
                principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
                actions=_LOGS_KEY_ACTIONS,
                resources=["*"],  # in a key policy "*" means this key
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": stack.format_arn(
                            service="logs",
                            resource="log-group",
                            resource_name="*",
                            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
                        )
                    }
                },
            )
        )

    def _allow_cloudwatch_alarms(self) -> None:
        """CloudWatch alarms publish to the KMS-encrypted on-call topic."""
        self.telemetry_key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsPublishToEncryptedTopic",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=["*"],
            )
        )
