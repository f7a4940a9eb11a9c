"""DynamoDB tables: lineage state (duplicates included), review queue and the append-only audit log.

All are on-demand, encrypted with the data key, with point-in-time recovery. In prod they have
deletion protection and are retained when the stack is deleted; staging tables are destroyed.

The audit table is append-only for every principal, not only by the functions' IAM policies: its
resource policy (`protect_audit_trail`) denies UpdateItem, DeleteItem, BatchWriteItem and the PartiQL
update/delete to everyone, and PutItem to every principal but the sync role and the operators'
roles. IAM cannot require PutItem's `attribute_not_exists` condition (there is no condition key for
it), so an overwriting PutItem by one of those roles is not denied: it is caught instead, because
the table streams every change to the archive function (`infra/constructs/archive.py`), which keeps
both versions under S3 Object Lock and pages on-call (`AuditRecordChanged`).
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from infra.deployment import DeploymentConfig

_STRING = dynamodb.AttributeType.STRING
#: Denied on the audit table to every principal, whatever its IAM policies say.
AUDIT_REWRITE_ACTIONS = (
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:PartiQLUpdate",
    "dynamodb:PartiQLDelete",
)


class Tables(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig, key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self._key = key

        #: Lineage state, uid alias, person index and routing-form intake items (conditional writes);
        #: only intake items carry `expires_at` (90 days after the person's latest form).
        self.state = self._table("State", partition_key="pk", ttl_attribute="expires_at")
        #: Events parked for a human (unmapped type, ambiguous patient, EHR rejected the resource); the
        #: message bodies (`body#<id>` items) expire `expires_at` (REVIEW_BODY_RETENTION_DAYS).
        self.review = self._table("Review", partition_key="pk", ttl_attribute="expires_at")
        #: Append-only audit trail; the sync role may only PutItem here. Every change is streamed to
        #: the WORM archive (both images, so an overwrite keeps the original too).
        self.audit = self._table(
            "Audit", partition_key="pk", sort_key="sk", stream=dynamodb.StreamViewType.NEW_AND_OLD_IMAGES
        )

    @property
    def all(self) -> tuple[dynamodb.Table, ...]:
        return (self.state, self.review, self.audit)

    def protect_audit_trail(self, appenders: Sequence[str]) -> None:
        """The audit table's resource policy: append-only for everyone; only `appenders` (role ARNs) may
        PutItem; in prod nobody may delete the table."""
        self.audit.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AuditRecordsAreNeverRewritten",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=list(AUDIT_REWRITE_ACTIONS),
                # A table's own resource policy names it as "*" (its ARN would be a circular reference).
                resources=["*"],
            )
        )
        self.audit.add_to_resource_policy(
            iam.PolicyStatement(
                sid="OnlyTheBridgeAppends",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=["dynamodb:PutItem"],
                resources=["*"],
                conditions={"ArnNotEquals": {"aws:PrincipalArn": list(appenders)}},
            )
        )
        if self._config.is_prod:
            self.audit.add_to_resource_policy(
                iam.PolicyStatement(
                    sid="AuditTableIsNeverDeleted",
                    effect=iam.Effect.DENY,
                    principals=[iam.AnyPrincipal()],
                    actions=["dynamodb:DeleteTable"],
                    resources=["*"],
                )
            )

    def keep_review_bodies_from(self, reader_arn: str, attributes: Sequence[str]) -> None:
        """The review table's resource policy: `reader_arn` (the operators' read-only role) may read only
        `attributes`, asked for by name, whatever its IAM policies say; never a parked body."""
        reads = ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:Scan"]
        reader = iam.ArnPrincipal(reader_arn)
        self.review.add_to_resource_policy(
            iam.PolicyStatement(
                sid="ReadOnlyOperatorsNameTheirAttributes",
                effect=iam.Effect.DENY,
                principals=[reader],
                actions=reads,
                resources=["*"],
                # A read without a projection (GetItem, Select ALL_ATTRIBUTES) has no SPECIFIC_ATTRIBUTES.
                conditions={"StringNotEquals": {"dynamodb:Select": "SPECIFIC_ATTRIBUTES"}},
            )
        )
        self.review.add_to_resource_policy(
            iam.PolicyStatement(
                sid="ReadOnlyOperatorsNeverReadBodies",
                effect=iam.Effect.DENY,
                principals=[reader],
                actions=reads,
                resources=["*"],
                conditions={"ForAnyValue:StringNotEquals": {"dynamodb:Attributes": list(attributes)}},
            )
        )

    def _table(
        self,
        construct_id: str,
        *,
        partition_key: str,
        sort_key: str | None = None,
        ttl_attribute: str | None = None,
        stream: dynamodb.StreamViewType | None = None,
    ) -> dynamodb.Table:
        return dynamodb.Table(
            self,
            construct_id,
            partition_key=dynamodb.Attribute(name=partition_key, type=_STRING),
            sort_key=dynamodb.Attribute(name=sort_key, type=_STRING) if sort_key else None,
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=self._key,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            deletion_protection=self._config.is_prod,
            removal_policy=self._config.removal_policy,
            time_to_live_attribute=ttl_attribute,
            stream=stream,
        )
