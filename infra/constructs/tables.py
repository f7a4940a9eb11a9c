"""DynamoDB tables: lineage state, Powertools idempotency, review queue and the append-only audit log.

All are on-demand, encrypted with the data key, with point-in-time recovery. In prod they have
deletion protection and are retained when the stack is deleted; staging tables are destroyed.
"""

from __future__ import annotations

from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from constructs import Construct

from infra.config import DeploymentConfig

_STRING = dynamodb.AttributeType.STRING


class Tables(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig, key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self._key = key

        #: Lineage state, uid alias, person index and routing-form intake items (conditional writes);
        #: only intake items carry `expires_at` (90 days after the person's latest form).
        self.state = self._table("State", partition_key="pk", ttl_attribute="expires_at")
        #: Powertools idempotency records (its default attribute names: `id`, TTL on `expiration`).
        self.idempotency = self._table("Idempotency", partition_key="id", ttl_attribute="expiration")
        #: Events parked for a human (unmapped type, ambiguous patient, EHR rejected the resource).
        self.review = self._table("Review", partition_key="pk")
        #: Append-only audit trail; the sync role may only PutItem here.
        self.audit = self._table("Audit", partition_key="pk", sort_key="sk")

    @property
    def all(self) -> tuple[dynamodb.Table, ...]:
        return (self.state, self.idempotency, self.review, self.audit)

    def _table(
        self,
        construct_id: str,
        *,
        partition_key: str,
        sort_key: str | None = None,
        ttl_attribute: str | None = None,
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
        )
