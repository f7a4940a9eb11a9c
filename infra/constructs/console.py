"""The operations console on the stack's dashboard: CloudWatch custom widgets drawn by a read-only function.

The `console` function (functions/console/) renders the same views as `calehr console`: a booking
search form (with each booking's audit timeline one click away), the review backlog and the recent
failures. Access control is the CloudWatch console's IAM sign-in: a viewer needs
`lambda:InvokeFunction` on this function (the stack output `ConsoleFunctionArn`) to see the widgets.

The function's role may only read: Query and Scan the audit trail, GetItem the lineage state (PHI-free
by design), and Scan the review table for the listing attributes only (a Scan asking for a body, or
for all attributes, is refused by the policy's conditions), decrypting through DynamoDB. It cannot
write anything, read a secret, reach the EHR or touch a queue.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.constants import (
    CONSOLE_MEMORY_MB,
    CONSOLE_RESERVED_CONCURRENCY,
    CONSOLE_SCAN_LIMIT,
    CONSOLE_TIMEOUT_SECONDS,
)
from infra.constructs.lambdas import BuiltFunction, FunctionSpec, Lambdas
from infra.constructs.tables import Tables
from shared.contracts import metrics
from shared.contracts.tables import REVIEW_ITEM_ATTRIBUTES

AUDIT_READ_ACTIONS = ("dynamodb:Query", "dynamodb:Scan")
STATE_READ_ACTIONS = ("dynamodb:GetItem",)
REVIEW_LISTING_ACTIONS = ("dynamodb:Scan",)
#: What a review listing may read: the review item's attributes, never a body.
REVIEW_LISTING_ATTRIBUTES = REVIEW_ITEM_ATTRIBUTES
#: (title, view parameters, width, height) of each widget, in dashboard order.
WIDGETS: tuple[tuple[str, dict[str, object], int, int], ...] = (
    ("Bookings: search by uid, date, trigger, event type, outcome or review reason", {"view": "search"}, 24, 9),
    ("Review backlog (no patient data)", {"view": "backlog"}, 12, 8),
    ("Recent failures (24 h)", {"view": "failures", "hours": 24}, 12, 8),
)


class ConsoleWidgets(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        lambdas: Lambdas,
        tables: Tables,
        dashboard: cloudwatch.Dashboard,
    ) -> None:
        super().__init__(scope, construct_id)
        # Read-only and built after the operator roles: not among the functions whose logs on-call reads.
        self.built: BuiltFunction = lambdas.build(self._spec(tables), scope=self, register=False)
        self.function: lambda_.Function = self.built.function
        dashboard.add_widgets(
            cloudwatch.TextWidget(
                markdown=(
                    "## Operations console\nRead-only views of the audit trail, lineage state and review backlog "
                    "(no patient data). The same views with the EHR's Appointment: `calehr console --stack "
                    f"{cdk.Stack.of(self).stack_name}`."
                ),
                width=24,
                height=2,
            )
        )
        widgets = [
            cloudwatch.CustomWidget(
                function_arn=self.function.function_arn,
                title=title,
                params=params,
                width=width,
                height=height,
                # A search scans the audit trail: only when someone asks, not on every refresh.
                update_on_refresh=params["view"] != "search",
                update_on_resize=False,
                update_on_time_range_change=False,
            )
            for title, params, width, height in WIDGETS
        ]
        dashboard.add_widgets(widgets[0])
        dashboard.add_widgets(*widgets[1:])

    @staticmethod
    def _spec(tables: Tables) -> FunctionSpec:
        return FunctionSpec(
            name=metrics.CONSOLE,
            description="Operations console widgets for the dashboard (read-only: audit trail, state, review listing)",
            memory_mb=CONSOLE_MEMORY_MB,
            timeout_seconds=CONSOLE_TIMEOUT_SECONDS,
            reserved_concurrency=CONSOLE_RESERVED_CONCURRENCY,
            environment={
                "AUDIT_TABLE": tables.audit.table_name,
                "STATE_TABLE": tables.state.table_name,
                "REVIEW_TABLE": tables.review.table_name,
                "CONSOLE_SCAN_LIMIT": str(CONSOLE_SCAN_LIMIT),
            },
            statements=[
                iam.PolicyStatement(
                    sid="ReadAuditTrail", actions=list(AUDIT_READ_ACTIONS), resources=[tables.audit.table_arn]
                ),
                iam.PolicyStatement(
                    sid="ReadLineageState", actions=list(STATE_READ_ACTIONS), resources=[tables.state.table_arn]
                ),
                iam.PolicyStatement(
                    sid="ListReviewItems",
                    actions=list(REVIEW_LISTING_ACTIONS),
                    resources=[tables.review.table_arn],
                    conditions={
                        # Only the listing attributes, asked for by name: never a parked body.
                        "ForAllValues:StringEquals": {"dynamodb:Attributes": list(REVIEW_LISTING_ATTRIBUTES)},
                        "StringEquals": {"dynamodb:Select": "SPECIFIC_ATTRIBUTES"},
                    },
                ),
            ],
            data_key_uses=[("UseDataKeyViaDynamoDb", ["kms:Decrypt"], ["dynamodb"])],
        )
