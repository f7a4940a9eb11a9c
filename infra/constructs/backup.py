"""AWS Backup for every table: daily backups into a vault encrypted with the data key.

Prod keeps daily backups for 35 days and monthly backups for a year, and its vault refuses
recovery-point deletion; staging keeps 35 days. Point-in-time recovery on the tables covers the
last 35 days at second granularity on top of this.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_backup as backup
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from constructs import Construct

from infra.deployment import DeploymentConfig


class Backups(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        key: kms.IKey,
        tables: tuple[dynamodb.Table, ...],
    ) -> None:
        super().__init__(scope, construct_id)
        # Retained in every stage: CloudFormation cannot delete a vault that still holds recovery
        # points (docs/deploy.md explains how to empty and delete it when tearing down staging).
        self.vault = backup.BackupVault(
            self,
            "Vault",
            encryption_key=key,
            removal_policy=cdk.RemovalPolicy.RETAIN,
            block_recovery_point_deletion=config.is_prod,
        )
        if config.is_prod:
            self.plan = backup.BackupPlan.daily_monthly1_year_retention(self, "Plan", self.vault)
        else:
            self.plan = backup.BackupPlan.daily35_day_retention(self, "Plan", self.vault)
        self.selection = self.plan.add_selection(
            "Tables",
            resources=[backup.BackupResource.from_dynamo_db_table(table) for table in tables],
        )
