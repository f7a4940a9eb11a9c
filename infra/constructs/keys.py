"""KMS customer-managed keys: one for PHI at rest, one for telemetry (logs and the on-call topic).

Two keys keep the blast radius small: the CloudWatch Logs and CloudWatch alarm service principals
may use the telemetry key only, never the key that protects booking payloads and EHR state.
Both keys rotate yearly.

The **data key's** policy separates administration from use. The account root may administer it
(describe, enable/disable, rotate, tag, change the policy, schedule deletion), which keeps the key
manageable by the account's IAM administrators, but no statement lets the root, or any IAM policy
through it, encrypt or decrypt. Use is granted by name, each time only through the AWS services
that principal works with (`kms:ViaService`):

* each function's role (added by `infra/constructs/lambdas.py` next to the role's own policy);
* CloudFormation's execution role (the CDK bootstrap role), to create the encrypted tables, queues,
  secrets, vault and bucket;
* the AWS Backup selection role, to back the tables up into the encrypted vault;
* the operators' roles from context `operatorRoleArns`, for the operator CLI.

The policy is exactly these statements: what CDK would add implicitly (a Secrets Manager secret adds
"any principal of the account, through Secrets Manager") is not written to the template.

An administrator can still change the policy (that is what keeps the key recoverable); doing so is a
`PutKeyPolicy` call in CloudTrail, and the next deploy puts this policy back.

The telemetry key keeps CDK's default account-root statement: it protects logs and alarm texts, which
carry no PHI by design.
"""

from __future__ import annotations

from collections.abc import Sequence

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from infra.deployment import DeploymentConfig

_LOGS_KEY_ACTIONS = [
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:DescribeKey",
]
#: What CloudWatch needs to publish an alarm to a KMS-encrypted SNS topic (the SNS developer guide,
#: "Enable compatibility between event sources from AWS services and encrypted topics").
ALARM_KEY_ACTIONS = ("kms:Decrypt", "kms:GenerateDataKey*")
#: Administration of the data key without any cryptographic use and without `kms:CreateGrant`
#: (a grant would be a way around the named principals).
KEY_ADMIN_ACTIONS = (
    "kms:DescribeKey",
    "kms:GetKeyPolicy",
    "kms:GetKeyRotationStatus",
    "kms:ListKeyPolicies",
    "kms:ListKeyRotations",
    "kms:ListGrants",
    "kms:ListResourceTags",
    "kms:PutKeyPolicy",
    "kms:UpdateKeyDescription",
    "kms:EnableKey",
    "kms:DisableKey",
    "kms:EnableKeyRotation",
    "kms:DisableKeyRotation",
    "kms:RotateKeyOnDemand",
    "kms:CreateAlias",
    "kms:UpdateAlias",
    "kms:DeleteAlias",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:RevokeGrant",
    "kms:ScheduleKeyDeletion",
    "kms:CancelKeyDeletion",
)
#: Cryptographic use of the data key; every statement that grants any of these names its principal.
KEY_USE_ACTIONS = (
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:CreateGrant",
)
#: Services CloudFormation creates data-key-encrypted resources in (tables, secrets with generated
#: values, queues, the backup vault, the archive bucket).
DEPLOYMENT_SERVICES = ("dynamodb", "secretsmanager", "sqs", "backup", "s3")
#: What CloudFormation's role does with the key through those services; grants only for AWS resources.
DEPLOYMENT_KEY_ACTIONS = ("kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey")
GRANT_ACTIONS = ("kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant")
#: The operator CLI reads review items, the audit trail and queued messages, and operators set secrets.
OPERATOR_SERVICES = ("dynamodb", "sqs", "secretsmanager")
OPERATOR_KEY_ACTIONS = ("kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey")
#: AWS Backup copies the tables into the vault (encrypted with the data key).
BACKUP_SERVICES = ("backup", "dynamodb")
BACKUP_KEY_ACTIONS = ("kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey*", "kms:DescribeKey")


def via_services(stack: cdk.Stack, services: Sequence[str]) -> dict[str, dict[str, list[str]]]:
    """The `kms:ViaService` condition for `services` in the stack's region."""
    return {"StringEquals": {"kms:ViaService": [f"{service}.{stack.region}.amazonaws.com" for service in services]}}


class Keys(Construct):
    """`data_key` encrypts queues, tables, secrets, backups and the archive; `telemetry_key` logs and SNS."""

    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig) -> None:
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        pending_window = cdk.Duration.days(30 if config.is_prod else 7)

        #: The data key's whole policy; statements are added by `allow_data_key_use` and `allow_backup`.
        self.data_key_policy = iam.PolicyDocument(statements=[self._administration()])
        self.data_key = kms.Key(
            self,
            "DataKey",
            description=f"{stack.stack_name}: PHI at rest (SQS, DynamoDB, Secrets Manager, AWS Backup, S3)",
            enable_key_rotation=True,
            pending_window=pending_window,
            removal_policy=config.removal_policy,
        )
        # The template gets exactly this document (resolved at synth, after every statement was added),
        # not CDK's root `kms:*` nor the statements CDK constructs add on their own through grants.
        cfn_key = self.data_key.node.default_child
        assert isinstance(cfn_key, kms.CfnKey)
        cfn_key.add_property_override("KeyPolicy", self.data_key_policy)
        self.data_key.add_alias(f"alias/{stack.stack_name}/data")
        self._allow_deployment()
        if config.operator_role_arns:
            self.allow_data_key_use(
                "OperatorsUseViaServices",
                [iam.ArnPrincipal(arn) for arn in config.operator_role_arns],
                actions=OPERATOR_KEY_ACTIONS,
                services=OPERATOR_SERVICES,
            )

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

    # --- data key ------------------------------------------------------------------------------

    @staticmethod
    def _administration() -> iam.PolicyStatement:
        return iam.PolicyStatement(
            sid="KeyAdministration",
            principals=[iam.AccountRootPrincipal()],
            actions=list(KEY_ADMIN_ACTIONS),
            resources=["*"],  # in a key policy "*" means this key
        )

    def allow_data_key_use(
        self,
        sid: str,
        principals: Sequence[iam.IPrincipal],
        *,
        actions: Sequence[str],
        services: Sequence[str],
    ) -> None:
        """Let `principals` use the data key, only through `services` (`kms:ViaService`)."""
        self.data_key_policy.add_statements(
            iam.PolicyStatement(
                sid=sid,
                principals=list(principals),
                actions=list(actions),
                resources=["*"],
                conditions=via_services(cdk.Stack.of(self), services),
            )
        )

    def _allow_deployment(self) -> None:
        """CloudFormation's execution role creates the encrypted resources (DynamoDB and AWS Backup
        create grants for the tables and the vault, Secrets Manager encrypts generated values)."""
        stack = cdk.Stack.of(self)
        synthesizer = stack.synthesizer
        if not isinstance(synthesizer, cdk.DefaultStackSynthesizer):  # pragma: no cover - the app's default
            raise TypeError("the data key policy needs the DefaultStackSynthesizer's CloudFormation role")
        deployer = iam.ArnPrincipal(cdk.Fn.sub(synthesizer.cloud_formation_execution_role_arn))
        self.allow_data_key_use(
            "DeploymentUseViaServices", [deployer], actions=DEPLOYMENT_KEY_ACTIONS, services=DEPLOYMENT_SERVICES
        )
        self.data_key_policy.add_statements(
            iam.PolicyStatement(
                sid="DeploymentGrantsForAwsResources",
                principals=[deployer],
                actions=list(GRANT_ACTIONS),
                resources=["*"],
                conditions={
                    **via_services(stack, DEPLOYMENT_SERVICES),
                    "Bool": {"kms:GrantIsForAWSResource": "true"},
                },
            )
        )

    def allow_backup(self, backup_role: iam.IPrincipal) -> None:
        """AWS Backup's role copies the tables into the vault encrypted with this key."""
        self.allow_data_key_use(
            "BackupUseViaServices", [backup_role], actions=BACKUP_KEY_ACTIONS, services=BACKUP_SERVICES
        )
        self.data_key_policy.add_statements(
            iam.PolicyStatement(
                sid="BackupGrantsForAwsResources",
                principals=[backup_role],
                actions=["kms:CreateGrant"],
                resources=["*"],
                conditions={
                    **via_services(cdk.Stack.of(self), BACKUP_SERVICES),
                    "Bool": {"kms:GrantIsForAWSResource": "true"},
                },
            )
        )

    # --- telemetry key -------------------------------------------------------------------------

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
        """CloudWatch alarms of this account and region publish to the KMS-encrypted on-call topic.

        The alarms' exact ARNs cannot be named here (the alarms depend on the topic, which depends on
        this key); the topic policy names them one by one (`infra/constructs/monitoring.py`).
        """
        stack = cdk.Stack.of(self)
        self.telemetry_key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsPublishToEncryptedTopic",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=list(ALARM_KEY_ACTIONS),
                resources=["*"],
                conditions={
                    "StringEquals": {"aws:SourceAccount": stack.account},
                    "ArnLike": {"aws:SourceArn": alarm_arn_pattern(stack)},
                },
            )
        )


def alarm_arn_pattern(stack: cdk.Stack) -> str:
    """`arn:<partition>:cloudwatch:<region>:<account>:alarm:*`: any alarm of this account and region."""
    return stack.format_arn(
        service="cloudwatch", resource="alarm", resource_name="*", arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME
    )
