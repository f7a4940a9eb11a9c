"""How every function of the stack is built: python3.13 on arm64, the shared layers, one least-privilege
role each. The capabilities (ingest, sync, reconcile, archive, availability, console: one construct each)
write their function's `FunctionSpec` and wire its triggers; `Lambdas.build` turns a spec into the function.

Roles are built here statement by statement (no AWS managed policies, no inline policies): each role gets
one customer-managed policy listing exactly the actions its function performs (the spec's statements plus
its own logs, the async-failure queue and, in a VPC, its network interfaces), and the role is handed to
Lambda as immutable so that CDK's convenience grants cannot widen it behind our back. Every role that uses
the data key is also named in the key's policy, with the same actions and services
(`infra/constructs/keys.py`): the key policy no longer lets IAM alone grant its use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.constants import LIVE_ALIAS, LOG_LEVEL, SNAPSTART_FUNCTIONS, SNAPSTART_REGIONS
from infra.constructs.bundling import ARCHITECTURE, RUNTIME, dependencies_layer_code, function_code, smart_layer_code
from infra.constructs.keys import Keys, via_services
from infra.constructs.network import Network
from infra.constructs.queue import Queues
from infra.deployment import DeploymentConfig
from shared.contracts import metrics

#: Lambda's ENI management inside a VPC (what AWSLambdaVPCAccessExecutionRole grants).
VPC_ENI_ACTIONS = (
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
)


@dataclass(frozen=True)
class FunctionSpec:
    name: str  # folder under functions/ and POWERTOOLS_SERVICE_NAME
    description: str
    memory_mb: int
    timeout_seconds: int
    reserved_concurrency: int
    environment: Mapping[str, str]
    statements: Sequence[iam.PolicyStatement]
    #: Asynchronous invocations only (the schedule): Lambda's retries and maximum event age.
    async_retry_attempts: int | None = None
    max_event_age_seconds: int | None = None
    #: How the function uses the data key: (statement id, actions, services); each becomes a statement
    #: of the role's policy and, naming the role, of the key's policy.
    data_key_uses: Sequence[tuple[str, Sequence[str], Sequence[str]]] = ()


@dataclass(frozen=True)
class BuiltFunction:
    function: lambda_.Function
    role: iam.Role
    policy: iam.ManagedPolicy
    log_group: logs.LogGroup
    #: The `live` alias of the published, SnapStart-enabled version (None without SnapStart).
    live: lambda_.Alias | None = None


class Lambdas(Construct):
    """The shared layers and the function factory. Functions built with `build(spec)` (no `scope`) keep
    their resources in this construct, so the deployed ingest, sync, reconcile and archive functions keep
    their logical ids; availability's and the console's live in their own constructs."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        keys: Keys,
        queues: Queues,
        network: Network | None,
    ) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self._keys = keys
        self._data_key = keys.data_key
        self._telemetry_key = keys.telemetry_key
        self._queues = queues
        self._network = network

        self.layer = lambda_.LayerVersion(
            self,
            "DependenciesLayer",
            description="Cal EHR Bridge: locked runtime dependencies + the shared package (.pyc, 3.13)",
            code=dependencies_layer_code(),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
        )
        #: `cryptography` for SMART Backend Services, only when an EHR uses it (`-c ehrSmartAuth=true`).
        self.smart_layer = (
            lambda_.LayerVersion(
                self,
                "SmartAuthLayer",
                description="Cal EHR Bridge: cryptography for SMART Backend Services client assertions",
                code=smart_layer_code(),
                compatible_runtimes=[RUNTIME],
                compatible_architectures=[ARCHITECTURE],
            )
            if config.ehr_smart_auth
            else None
        )
        #: Every registered function, with its log group, role and policy by name.
        self.all: tuple[lambda_.Function, ...] = ()
        self.log_groups: dict[str, logs.LogGroup] = {}
        self.roles: dict[str, iam.Role] = {}
        self.policies: dict[str, iam.ManagedPolicy] = {}

    def build(self, spec: FunctionSpec, *, scope: Construct | None = None, register: bool = True) -> BuiltFunction:
        """The function of `spec`, its resources in `scope` (default: this construct). Registered functions
        are the stack's: on-call reads their logs and configuration, the tests walk them."""
        built = self._build(spec, scope=scope or self)
        if register:
            self.all = (*self.all, built.function)
            self.log_groups[spec.name] = built.log_group
            self.roles[spec.name] = built.role
            self.policies[spec.name] = built.policy
        return built

    def _smart_layers(self, spec: FunctionSpec) -> list[lambda_.ILayerVersion]:
        """The SMART layer for a function that authenticates to an EHR, when the deployment uses SMART."""
        talks_to_ehr = "EHR_AUTH_SECRET_ARN" in spec.environment or "EHR_ROUTES" in spec.environment
        return [self.smart_layer] if self.smart_layer is not None and talks_to_ehr else []

    # --- building blocks -------------------------------------------------------------------------

    def _data_key_statement(self, sid: str, actions: Sequence[str], *, via: Sequence[str]) -> iam.PolicyStatement:
        return iam.PolicyStatement(
            sid=sid,
            actions=list(actions),
            resources=[self._data_key.key_arn],
            conditions=via_services(cdk.Stack.of(self), via),
        )

    def _security_groups(self, name: str) -> list[ec2.ISecurityGroup] | None:
        """Every function: HTTPS out; the sync function also MLLP to the interface engine (hl7v2)."""
        if self._network is None:
            return None
        groups: list[ec2.ISecurityGroup] = [self._network.function_security_group]
        if name == metrics.SYNC and self._network.mllp_security_group is not None:
            groups.append(self._network.mllp_security_group)
        return groups

    def _build(self, spec: FunctionSpec, *, scope: Construct) -> BuiltFunction:
        """A function as every function here is built: its own log group, role and customer-managed policy,
        the shared layer, the async-failure queue, VPC mode, the data key's policy naming the role."""
        title = spec.name.capitalize()
        log_group = logs.LogGroup(
            scope,
            f"{title}Logs",
            encryption_key=self._telemetry_key,
            retention=self._config.log_retention,
            removal_policy=self._config.removal_policy,
            # Defense in depth for "no PHI in logs": mask identifiers that must never be logged.
            data_protection_policy=logs.DataProtectionPolicy(
                name=f"{title}PhiMasking",
                description="Masks e-mail addresses, phone numbers and SSNs should any reach the logs",
                identifiers=[
                    logs.DataIdentifier.EMAILADDRESS,
                    logs.DataIdentifier.PHONENUMBER_US,
                    logs.DataIdentifier.SSN_US,
                ],
            ),
        )
        failures = self._queues.function_failures
        statements = [
            iam.PolicyStatement(
                sid="WriteOwnLogs",
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[log_group.log_group_arn],
            ),
            iam.PolicyStatement(
                sid="AsyncFailureDeadLetter", actions=["sqs:SendMessage"], resources=[failures.queue_arn]
            ),
            *spec.statements,
            *(self._data_key_statement(sid, actions, via=via) for sid, actions, via in spec.data_key_uses),
        ]
        if self._network is not None:
            statements.append(
                iam.PolicyStatement(sid="ManageVpcNetworkInterfaces", actions=list(VPC_ENI_ACTIONS), resources=["*"])
            )
        role = iam.Role(
            scope,
            f"{title}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Execution role of the {spec.name} function",
        )
        policy = iam.ManagedPolicy(
            scope,
            f"{title}Policy",
            description=f"Least privilege for the {spec.name} function",
            statements=statements,
            roles=[role],
        )
        function = lambda_.Function(
            scope,
            title,
            description=spec.description,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=f"functions.{spec.name}.handler.handler",
            code=function_code(spec.name),
            layers=[self.layer, *self._smart_layers(spec)],
            memory_size=spec.memory_mb,
            timeout=cdk.Duration.seconds(spec.timeout_seconds),
            reserved_concurrent_executions=spec.reserved_concurrency,
            # Immutable: every permission is in `policy` above, nothing is added implicitly.
            role=role.without_policy_updates(),
            log_group=log_group,
            dead_letter_queue=failures,
            retry_attempts=spec.async_retry_attempts,
            max_event_age=(
                cdk.Duration.seconds(spec.max_event_age_seconds) if spec.max_event_age_seconds is not None else None
            ),
            environment={
                "POWERTOOLS_SERVICE_NAME": spec.name,
                "POWERTOOLS_METRICS_NAMESPACE": self._config.metrics_namespace,
                "LOG_LEVEL": LOG_LEVEL,
                "STAGE": self._config.stage,
                **spec.environment,
            },
            vpc=self._network.vpc if self._network else None,
            vpc_subnets=(
                ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS) if self._network else None
            ),
            security_groups=self._security_groups(spec.name),
            snap_start=(
                lambda_.SnapStartConf.ON_PUBLISHED_VERSIONS
                if spec.name in SNAPSTART_FUNCTIONS and snap_start_available(cdk.Stack.of(scope))
                else None
            ),
        )
        live = (
            lambda_.Alias(scope, f"{title}Live", alias_name=LIVE_ALIAS, version=function.current_version)
            if spec.name in SNAPSTART_FUNCTIONS
            else None
        )
        if live is not None:  # CDK warns whenever SnapStart is on; the alias above is the published version
            cdk.Annotations.of(function).acknowledge_warning(
                "@aws-cdk/aws-lambda:snapStartRequirePublish",
                "every deploy publishes current_version and the live alias (what the API and the queue invoke)",
            )
        # The function (and so its event source mapping) must not exist before its permissions do.
        function.node.add_dependency(policy)
        # The key policy names the role too: IAM alone no longer grants use of the data key.
        for sid, actions, via in spec.data_key_uses:
            self._keys.allow_data_key_use(f"{title}{sid}", [role], actions=actions, services=via)
        return BuiltFunction(function=function, role=role, policy=policy, log_group=log_group, live=live)


def snap_start_available(stack: cdk.Stack) -> bool:
    """SnapStart where Lambda offers it for Python; a region-agnostic synth (a token) keeps it on."""
    return cdk.Token.is_unresolved(stack.region) or stack.region in SNAPSTART_REGIONS
