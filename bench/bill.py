"""The monthly bill of a deployed stack: every billed resource of the synthesized template, priced.

Each line names where its quantity comes from: a template resource (type and logical id), a schedule of
the template and the function it runs, a metric the code emits (from the EMF census, `bench.emf_census`),
or the per-webhook model (`bench.cost.model`, measured by the other benchmarks). Nothing is counted by
hand: a resource type of the template is either priced here (`PRICED_TYPES`) or listed as free with the
reason (`FREE_TYPES`), and `tests/infra/test_bench_bill_coverage.py` fails for a type in neither.

Fixed = what the month costs with no booking at all (the stack standing, the schedules running for the
clinic's providers); variable = what the bookings add. Storage that accumulates (audit trail, WORM
archive, logs, backups) is priced as it stands after `Traffic.months_in_operation` months.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from bench.prices import (
    FREE_TIER,
    FREE_TIER_DASHBOARD_METRICS,
    HOURS_PER_MONTH,
    PRICE,
    SECONDS_PER_MONTH,
)
from bench.stack_template import Function, Template, _refs_in, runs_per_month

#: A Lambda function gets one full vCPU at 1,769 MB; below that, CPU time stretches proportionally.
LAMBDA_FULL_VCPU_MB = 1769
#: START, END and REPORT lines Lambda writes per invocation (bytes, typical); CloudWatch Logs adds 26 bytes
#: to each event.
LAMBDA_PLATFORM_LOG_BYTES = 330
LOG_EVENT_OVERHEAD_BYTES = 26
#: API Gateway's detailed (per-method) metrics: Count, Latency, IntegrationLatency, 4XXError, 5XXError
#: (the cache metrics only with caching, which the stage does not enable).
APIGW_DETAILED_METRICS = ("Count", "Latency", "IntegrationLatency", "4XXError", "5XXError")
#: DynamoDB adds this to every item's size for storage.
DDB_ITEM_OVERHEAD_BYTES = 100
#: A parameter above this size is an advanced one (SSM Parameter Store).
SSM_STANDARD_MAX_BYTES = 4096
#: Nor can a parameter be larger than this (an advanced one).
SSM_ADVANCED_MAX_BYTES = 8192


@dataclass(frozen=True)
class Profile:
    key: str
    label: str
    bookings_per_month: int
    providers: int


PROFILES = (
    Profile("small_practice", "small practice", 1_000, 3),
    Profile("clinic_group", "clinic group", 30_000, 40),
    Profile("hospital", "hospital", 1_000_000, 600),
)


@dataclass(frozen=True)
class Traffic:
    """What a deployment's month looks like beyond its bookings: documented defaults, not measurable here."""

    #: Webhooks per booking, by the census activity that stands for them (a new booking, 15 % rescheduled,
    #: 10 % cancelled).
    webhooks_per_booking: Mapping[str, float] = field(
        default_factory=lambda: {
            "webhook: new booking": 1.0,
            "webhook: reschedule": 0.15,
            "webhook: cancellation": 0.10,
        }
    )
    #: Cal.com reads a host's busy feed when it computes the host's free slots: booking-page views.
    feed_fetches_per_booking: float = 10.0
    #: Bookings that break a booking rule in `warn` mode, spread over this many rules.
    rule_warning_share: float = 0.02
    rules_in_use: int = 2
    #: Webhooks parked for review (each keeps its body for REVIEW_BODY_RETENTION_DAYS).
    review_share: float = 0.01
    review_item_bytes: float = 400.0
    review_body_bytes: float = 3000.0
    review_body_days: float = 30.0
    #: Storage that accumulates is priced as it stands after this many months.
    months_in_operation: int = 12
    #: CloudWatch Logs bills archived storage compressed.
    log_compression: float = 0.15
    #: Minutes an idle Lambda container stays warm (AWS publishes no figure): sets the cold-start share.
    warm_minutes: float = 10.0
    #: Mean latency of each kind of remote call in the region.
    call_ms: Mapping[str, float] = field(
        default_factory=lambda: {
            "dynamodb": 6.0,
            "sqs": 10.0,
            "secretsmanager": 15.0,
            "s3": 20.0,
            "ehr": 150.0,
            "calcom": 250.0,
        }
    )
    #: Lambda's SQS event source long-polls an empty queue with this many pollers, 20 s per receive.
    sqs_idle_pollers: int = 5
    sqs_long_poll_seconds: int = 20
    #: Bytes of one AWS API request and answer through an interface endpoint (TLS included).
    bytes_per_aws_call: float = 3000.0
    #: VPC flow log records per Lambda invocation inside the VPC (its ENI, the endpoints', the NAT's) and
    #: bytes per record.
    flow_records_per_invocation: float = 8.0
    flow_record_bytes: float = 130.0
    #: Clinic mapping bytes per provider (the SSM parameter's size grows with the practitioners list).
    mapping_bytes_per_provider: float = 120.0
    mapping_base_bytes: float = 1500.0


@dataclass
class Line:
    service: str
    item: str
    source: str
    quantity: float
    unit: str
    price: str
    usd: float
    part: str  # "fixed" or "variable"
    note: str = ""


def _line(
    service: str, item: str, source: str, quantity: float, price: str, part: str, *, unit: str = "", note: str = ""
) -> Line:
    return Line(
        service, item, source, quantity, unit or PRICE[price].unit, price, PRICE[price].usd * quantity, part, note
    )


def _sources(lids: Iterable[str], resource_type: str) -> str:
    ids = sorted(lids)
    return f"{resource_type} x{len(ids)}: {', '.join(ids)}" if len(ids) != 1 else f"{resource_type} {ids[0]}"


def billed_share(per_hour: float) -> float:
    """Share of the month's hours in which an event at `per_hour` (Poisson, spread evenly) happens at least
    once: what a custom metric emitted on that event is billed for (CloudWatch prorates by the hour)."""
    return 1.0 - math.exp(-max(per_hour, 0.0))


def cold_share(per_hour: float, warm_minutes: float) -> float:
    """Share of invocations that find no warm container: the gap since the previous one exceeds the warm
    time (Poisson arrivals at `per_hour`); at least 0.5 % (scaling out, recycling)."""
    return max(0.005, math.exp(-per_hour * warm_minutes / 60))


# --- activities of the census -----------------------------------------------------------------------


@dataclass(frozen=True)
class Work:
    """What one unit of work (a run, a feed, a webhook) costs a function, from the census."""

    invocations: float = 0.0
    cpu_ms: float = 0.0
    calls: Mapping[str, float] = field(default_factory=dict)
    wru: float = 0.0
    rru: float = 0.0
    bytes: Mapping[str, float] = field(default_factory=dict)
    log_bytes: float = 0.0
    log_lines: float = 0.0

    def scaled(self, factor: float) -> Work:
        return Work(
            self.invocations * factor,
            self.cpu_ms * factor,
            {k: v * factor for k, v in self.calls.items()},
            self.wru * factor,
            self.rru * factor,
            {k: v * factor for k, v in self.bytes.items()},
            self.log_bytes * factor,
            self.log_lines * factor,
        )

    def minus(self, other: Work) -> Work:
        def diff(a: Mapping[str, float], b: Mapping[str, float]) -> dict[str, float]:
            return {k: max(0.0, a.get(k, 0.0) - b.get(k, 0.0)) for k in set(a) | set(b)}

        return Work(
            max(0.0, self.invocations - other.invocations),
            max(0.0, self.cpu_ms - other.cpu_ms),
            diff(self.calls, other.calls),
            max(0.0, self.wru - other.wru),
            max(0.0, self.rru - other.rru),
            diff(self.bytes, other.bytes),
            max(0.0, self.log_bytes - other.log_bytes),
            max(0.0, self.log_lines - other.log_lines),
        )

    def remote_calls(self, kind: str) -> float:
        prefix = f"aws {kind} " if kind not in ("ehr", "calcom") else f"{kind} "
        return sum(v for k, v in self.calls.items() if k.startswith(prefix))

    def billed_ms(self, memory_mb: int, call_ms: Mapping[str, float]) -> float:
        """Duration one invocation is billed: own CPU stretched by the memory's CPU share, plus the wait on
        every remote call at its in-region latency."""
        own = self.cpu_ms * LAMBDA_FULL_VCPU_MB / max(memory_mb, 1)
        wait = sum(self.remote_calls(kind) * ms for kind, ms in call_ms.items())
        invocations = max(self.invocations, 1e-9)
        return math.ceil((own + wait) / invocations) * invocations if self.invocations else own + wait


def work_of(census: Mapping[str, Any], activity: str, function: str) -> Work:
    entry = (census.get("activities", {}).get(activity) or {}).get("functions", {}).get(function)
    if not entry:
        return Work()
    return Work(
        float(entry["invocations"]),
        float(entry["cpu_ms"]),
        {k: float(v) for k, v in entry["calls"].items()},
        float(entry["ddb_wru"]),
        float(entry["ddb_rru"]),
        {k: float(v) for k, v in entry.get("bytes", {}).items()},
        float(entry["log_bytes"]),
        float(entry["log_lines"]),
    )


def feeds_in(census: Mapping[str, Any], activity: str) -> int:
    result = (census.get("activities", {}).get(activity) or {}).get("result") or {}
    return int(((result.get("availability") or {}).get("feeds")) or 1) if isinstance(result, dict) else 1


# --- pricers ----------------------------------------------------------------------------------------


@dataclass
class Context:
    template: Template
    census: Mapping[str, Any]
    profile: Profile
    traffic: Traffic
    #: USD per webhook by line of `bench.cost.model` (what each webhook costs: front door, ingest, queue,
    #: sync, archive, drift check, logs), with the template resources each comes from.
    per_webhook: Mapping[str, tuple[float, str, str]]
    #: Mean item bytes per table role and key prefix (bench/results/throughput.json).
    item_bytes: Mapping[str, Mapping[str, float]]
    functions: dict[str, Function] = field(init=False)
    by_service: dict[str, Function] = field(init=False)

    def __post_init__(self) -> None:
        self.functions = self.template.functions()
        self.by_service = self.template.function_by_service()

    @property
    def bookings(self) -> float:
        return float(self.profile.bookings_per_month)

    @property
    def webhooks(self) -> float:
        return self.bookings * sum(self.traffic.webhooks_per_booking.values())

    @property
    def feed_requests(self) -> float:
        return self.bookings * self.traffic.feed_fetches_per_booking

    def schedule_runs(self, service: str) -> tuple[float, str]:
        """Runs a month of the schedule that targets `service`'s function, and the rule's logical id."""
        function = self.by_service.get(service)
        for rule, expression, target in self.template.schedules():
            if function is not None and target == function.logical_id:
                return runs_per_month(expression, HOURS_PER_MONTH), f"AWS::Events::Rule {rule} ({expression})"
        return 0.0, "no schedule"


Pricer = Callable[[Context], list[Line]]
PRICED_TYPES: dict[str, Pricer] = {}


def prices(*resource_types: str) -> Callable[[Pricer], Pricer]:
    def register(pricer: Pricer) -> Pricer:
        for resource_type in resource_types:
            PRICED_TYPES[resource_type] = pricer
        return pricer

    return register


#: Resource types with no charge of their own, and why. A type in neither this nor `PRICED_TYPES` fails
#: tests/infra/test_bench_bill_coverage.py.
FREE_TYPES: dict[str, str] = {
    "AWS::ApiGateway::Account": "account setting (the logging role); no charge",
    "AWS::ApiGateway::Deployment": "a snapshot of the API; requests are priced on the stage",
    "AWS::ApiGateway::Method": "requests are priced on the stage (detailed metrics per method: on the stage line)",
    "AWS::ApiGateway::Model": "request validation is included in the request price",
    "AWS::ApiGateway::RequestValidator": "request validation is included in the request price",
    "AWS::ApiGateway::Resource": "a path of the API; no charge",
    "AWS::ApiGateway::RestApi": "the API itself costs nothing; its requests and metrics are priced on the stage",
    "AWS::Backup::BackupVault": "a vault costs nothing; its recovery points are priced on the backup plan",
    "AWS::Backup::BackupSelection": "what the plan backs up; priced on the backup plan",
    "AWS::CDK::Metadata": "CDK's own metadata; not a resource",
    "AWS::EC2::FlowLog": "delivery is free; the records are priced on the destination log group",
    "AWS::EC2::InternetGateway": "no charge (data through the NAT gateways is priced there)",
    "AWS::EC2::Route": "a route: VPC routing has no charge",
    "AWS::EC2::RouteTable": "a route table: VPC routing has no charge",
    "AWS::EC2::SecurityGroup": "security groups have no charge",
    "AWS::EC2::SecurityGroupEgress": "a security group rule: no charge",
    "AWS::EC2::SecurityGroupIngress": "a security group rule: no charge",
    "AWS::EC2::Subnet": "subnets have no charge",
    "AWS::EC2::SubnetRouteTableAssociation": "VPC routing has no charge",
    "AWS::EC2::VPC": "no charge (its NAT gateways, endpoints and flow logs are priced)",
    "AWS::EC2::VPCGatewayAttachment": "attaching a gateway has no charge",
    "AWS::EC2::VPNGateway": "a virtual private gateway is free; the VPN connection the operator adds is not "
    "part of the stack",
    "AWS::EC2::VPNGatewayRoutePropagation": "route propagation has no charge",
    "AWS::Events::Rule": "scheduled events are AWS service events (no charge); the runs they start are "
    "priced on the target function",
    "AWS::IAM::ManagedPolicy": "IAM has no charge",
    "AWS::IAM::Policy": "IAM has no charge",
    "AWS::IAM::Role": "IAM has no charge",
    "AWS::KMS::Alias": "aliases are free (the key is priced)",
    "AWS::Lambda::Alias": "aliases are free (the version behind it is priced for SnapStart)",
    "AWS::Lambda::EventInvokeConfig": "retry settings; no charge",
    "AWS::Lambda::EventSourceMapping": "the SQS mapping's polls are priced on its queue; a DynamoDB stream "
    "mapping's reads are free for Lambda triggers",
    "AWS::Lambda::LayerVersion": "layer storage has no charge (it counts against the code storage quota)",
    "AWS::Lambda::Permission": "a resource policy statement: no charge",
    "AWS::S3::BucketPolicy": "bucket policies have no charge",
    "AWS::SNS::Subscription": "alarm notifications only (a few a month: under a cent)",
    "AWS::SNS::Topic": "alarm notifications only (a few a month: under a cent)",
    "AWS::SNS::TopicPolicy": "topic policies have no charge",
    "AWS::SQS::QueuePolicy": "queue policies have no charge",
    "AWS::WAFv2::LoggingConfiguration": "log delivery; the records are priced on the destination log group",
    "AWS::WAFv2::WebACLAssociation": "no charge (the web ACL is priced)",
    "Custom::VpcRestrictDefaultSG": "runs a CDK function during deployments only",
}


# --- fixed: the stack standing -------------------------------------------------------------------------


@prices("AWS::WAFv2::WebACL")
def _waf(ctx: Context) -> list[Line]:
    lines = []
    api_requests = ctx.webhooks + ctx.feed_requests
    for lid, resource in ctx.template.of_type("AWS::WAFv2::WebACL").items():
        rules = resource.get("Properties", {}).get("Rules", [])
        source = f"AWS::WAFv2::WebACL {lid}"
        lines.append(_line("WAF", "web ACL", source, 1, "waf_web_acl_month", "fixed"))
        names = ", ".join(rule["Name"] for rule in rules)
        lines.append(
            _line("WAF", f"rules ({names})", f"{source}.Rules x{len(rules)}", len(rules), "waf_rule_month", "fixed")
        )
        lines.append(
            _line(
                "WAF",
                "requests inspected (webhooks + busy feed reads)",
                source,
                api_requests,
                "waf_request",
                "variable",
            )
        )
    return lines


@prices("AWS::KMS::Key")
def _kms(ctx: Context) -> list[Line]:
    keys = ctx.template.of_type("AWS::KMS::Key")
    lines = [
        _line("KMS", "customer managed keys", _sources(keys, "AWS::KMS::Key"), len(keys), "kms_key_month", "fixed")
    ]
    # Services that hold a data key of a CMK refresh it about every 5 minutes while in use: each encrypted
    # table and log group, each queue per principal that uses it (SQS data key reuse period, 300 s).
    encrypted = {
        lid
        for kind in ("AWS::DynamoDB::Table", "AWS::SQS::Queue", "AWS::Logs::LogGroup", "AWS::S3::Bucket")
        for lid, resource in ctx.template.of_type(kind).items()
        if set(ctx.template.refs_in(lid)) & set(keys)
    }
    refreshes = len(encrypted) * SECONDS_PER_MONTH / 300
    lines.append(
        _line(
            "KMS",
            "data key refreshes of encrypted tables, queues, log groups and buckets (every 5 min)",
            _sources(encrypted, "encrypted with a CMK"),
            refreshes,
            "kms_request",
            "fixed",
            note="upper bound: a resource idle for a whole 5-minute window asks for nothing",
        )
    )
    return lines


@prices("AWS::SecretsManager::Secret")
def _secrets(ctx: Context) -> list[Line]:
    secrets = ctx.template.of_type("AWS::SecretsManager::Secret")
    lines = [
        _line(
            "Secrets Manager",
            "secrets",
            _sources(secrets, "AWS::SecretsManager::Secret"),
            len(secrets),
            "secret_month",
            "fixed",
        )
    ]
    # Every function caches each secret it reads for 5 minutes (SECRET_CACHE_SECONDS): a read per
    # container start and per 5 minutes of a warm container. Each read also decrypts with the data key.
    fixed, variable = 0.0, 0.0
    for function in ctx.functions.values():
        if not function.secrets:
            continue
        invocations, part = _invocations(ctx, function)
        reads = min(invocations, SECONDS_PER_MONTH / 300) * len(function.secrets)
        if part == "fixed":
            fixed += reads
        else:
            variable += reads
    source = "the *_SECRET_ARN variables of each AWS::Lambda::Function"
    for part, reads in (("fixed", fixed), ("variable", variable)):
        if reads:
            lines.append(
                _line("Secrets Manager", f"GetSecretValue ({part} invocations)", source, reads, "secret_api_call", part)
            )
            lines.append(_line("KMS", f"decrypts of those secret reads ({part})", source, reads, "kms_request", part))
    return lines


@prices("AWS::CloudWatch::Alarm")
def _alarms(ctx: Context) -> list[Line]:
    standard: dict[str, int] = {}
    high: dict[str, int] = {}
    for lid, resource in ctx.template.of_type("AWS::CloudWatch::Alarm").items():
        props = resource.get("Properties", {})
        queries = props.get("Metrics") or []
        stats = [q["MetricStat"] for q in queries if "MetricStat" in q]
        periods = [int(s.get("Period", 60)) for s in stats] or [int(props.get("Period", 60))]
        metrics = len(stats) or 1
        if props.get("ThresholdMetricId"):  # an anomaly detection band: the metric and its two bounds
            metrics = 3 * metrics
        (high if min(periods) < 60 else standard)[lid] = metrics
    lines = []
    if standard:
        lines.append(
            _line(
                "CloudWatch",
                f"alarms ({len(standard)} alarms reading {sum(standard.values())} metrics: a "
                "metric-math alarm pays for each metric it reads)",
                _sources(standard, "AWS::CloudWatch::Alarm"),
                sum(standard.values()),
                "cw_alarm_metric_month",
                "fixed",
            )
        )
    if high:
        lines.append(
            _line(
                "CloudWatch",
                "high-resolution alarms",
                _sources(high, "AWS::CloudWatch::Alarm"),
                sum(high.values()),
                "cw_high_res_alarm_metric_month",
                "fixed",
            )
        )
    return lines


@prices("AWS::CloudWatch::Dashboard")
def _dashboards(ctx: Context) -> list[Line]:
    dashboards = ctx.template.of_type("AWS::CloudWatch::Dashboard")
    return [
        _line(
            "CloudWatch",
            "dashboards",
            _sources(dashboards, "AWS::CloudWatch::Dashboard"),
            len(dashboards),
            "cw_dashboard_month",
            "fixed",
        )
    ]


@prices("AWS::Lambda::Version")
def _snapstart(ctx: Context) -> list[Line]:
    lines = []
    for version, function_id in sorted(ctx.template.snapstart_versions().items()):
        function = ctx.functions[function_id]
        gb_seconds = function.memory_mb / 1024 * SECONDS_PER_MONTH
        lines.append(
            _line(
                "Lambda",
                f"SnapStart cache of {function.service}'s published version ({function.memory_mb} MB)",
                f"AWS::Lambda::Version {version} of {function_id}",
                gb_seconds,
                "snapstart_cache_gb_second",
                "fixed",
            )
        )
    return lines


@prices("AWS::SSM::Parameter")
def _parameters(ctx: Context) -> list[Line]:
    lines = []
    for lid, resource in ctx.template.of_type("AWS::SSM::Parameter").items():
        tier = resource.get("Properties", {}).get("Tier", "Standard")
        size = _mapping_bytes(ctx)
        advanced = tier == "Advanced" or (tier == "Intelligent-Tiering" and size > SSM_STANDARD_MAX_BYTES)
        note = f"tier {tier}; the clinic mapping for {ctx.profile.providers} providers is ~{size / 1024:.1f} KB"
        source = f"AWS::SSM::Parameter {lid}"
        if not advanced:
            lines.append(Line("SSM", "parameter (standard tier: no charge)", source, 1, "-", "-", 0.0, "fixed", note))
            continue
        # each sync container re-reads the mapping every 5 minutes
        reads = SECONDS_PER_MONTH / 300 * max(1.0, min(5.0, ctx.webhooks / (HOURS_PER_MONTH * 60)))
        lines.append(
            _line(
                "SSM", "advanced parameter (over 4 KB)", source, 1, "ssm_advanced_parameter_month", "fixed", note=note
            )
        )
        lines.append(
            _line(
                "SSM",
                "advanced parameter reads (each sync container every 5 min)",
                source,
                reads,
                "ssm_advanced_api_interaction",
                "fixed",
            )
        )
    return lines


def _mapping_bytes(ctx: Context) -> float:
    return ctx.traffic.mapping_base_bytes + ctx.traffic.mapping_bytes_per_provider * ctx.profile.providers


@prices("AWS::EC2::NatGateway", "AWS::EC2::EIP")
def _nat(ctx: Context) -> list[Line]:
    nats = ctx.template.of_type("AWS::EC2::NatGateway")
    eips = ctx.template.of_type("AWS::EC2::EIP")
    if not nats and not eips:
        return []
    lines = []
    if nats:
        lines.append(
            _line(
                "VPC",
                "NAT gateway hours",
                _sources(nats, "AWS::EC2::NatGateway"),
                len(nats) * HOURS_PER_MONTH,
                "nat_gateway_hour",
                "fixed",
            )
        )
    if eips:
        lines.append(
            _line(
                "VPC",
                "public IPv4 addresses (the NAT gateways' Elastic IPs)",
                _sources(eips, "AWS::EC2::EIP"),
                len(eips) * HOURS_PER_MONTH,
                "public_ipv4_hour",
                "fixed",
            )
        )
    if nats:
        s3_gateway = any(
            "s3" in str(r.get("Properties", {}).get("ServiceName"))
            and r.get("Properties", {}).get("VpcEndpointType") == "Gateway"
            for r in ctx.template.of_type("AWS::EC2::VPCEndpoint").values()
        )
        fixed_gb, variable_gb = _internet_bytes(ctx, include_s3=not s3_gateway)
        source = _sources(nats, "AWS::EC2::NatGateway")
        what = "EHR and Cal.com API traffic" + ("" if s3_gateway else " and S3 (no S3 gateway endpoint)")
        lines.append(
            _line("VPC", f"NAT data processed: {what}, schedules", source, fixed_gb / 1e9, "nat_gateway_gb", "fixed")
        )
        lines.append(
            _line(
                "VPC", f"NAT data processed: {what}, webhooks", source, variable_gb / 1e9, "nat_gateway_gb", "variable"
            )
        )
    return lines


@prices("AWS::EC2::VPCEndpoint")
def _endpoints(ctx: Context) -> list[Line]:
    lines = []
    calls_by_service = _aws_calls_by_service(ctx)
    for lid, resource in sorted(ctx.template.of_type("AWS::EC2::VPCEndpoint").items()):
        props = resource.get("Properties", {})
        service = _service_of(props.get("ServiceName"))
        if props.get("VpcEndpointType") != "Interface":
            lines.append(
                Line(
                    "VPC",
                    f"gateway endpoint ({service}): no charge",
                    f"AWS::EC2::VPCEndpoint {lid}",
                    0,
                    "-",
                    "-",
                    0.0,
                    "fixed",
                )
            )
            continue
        azs = len(props.get("SubnetIds") or []) or 1
        lines.append(
            _line(
                "VPC",
                f"interface endpoint {service} ({azs} AZs)",
                f"AWS::EC2::VPCEndpoint {lid}",
                azs * HOURS_PER_MONTH,
                "interface_endpoint_az_hour",
                "fixed",
            )
        )
        fixed_calls, variable_calls = calls_by_service.get(service, (0.0, 0.0))
        for part, calls in (("fixed", fixed_calls), ("variable", variable_calls)):
            if calls:
                lines.append(
                    _line(
                        "VPC",
                        f"interface endpoint {service}: data ({part})",
                        f"AWS::EC2::VPCEndpoint {lid}",
                        calls * ctx.traffic.bytes_per_aws_call / 1e9,
                        "interface_endpoint_gb",
                        part,
                    )
                )
    return lines


def _service_of(name: Any) -> str:
    """`com.amazonaws.<region>.<service>` (a join in the template) → `<service>`."""
    if isinstance(name, dict) and "Fn::Join" in name:
        parts = name["Fn::Join"][1]
        return str(parts[-1]).lstrip(".")
    return str(name).rsplit(".", 1)[-1]


# --- functions: scheduled, per webhook, per feed read ------------------------------------------------------


def _invocations(ctx: Context, function: Function) -> tuple[float, str]:
    """Invocations a month of `function`, and whether they are fixed (schedules) or variable (bookings)."""
    service = function.service
    runs, _ = ctx.schedule_runs(service)
    if runs:
        return runs, "fixed"
    if service in ("ingest", "sync", "archive"):
        return ctx.webhooks, "variable"
    if service == "feed":
        return ctx.feed_requests, "variable"
    return 0.0, "variable"


def _schedule_work(ctx: Context, service: str) -> tuple[Work, float, str]:
    """One month of a scheduled function's work, its runs and the rule; from the census."""
    runs, rule = ctx.schedule_runs(service)
    if service == "reconcile":
        base = work_of(ctx.census, "reconcile: nothing in the window", "reconcile")
        return base.scaled(runs), runs, rule
    if service == "availability":
        function = ctx.by_service[service]
        full_sweep_minutes = float(function.environment.get("AVAILABILITY_FULL_SWEEP_MINUTES", 60))
        full_runs = min(runs, HOURS_PER_MONTH * 60 / full_sweep_minutes)
        full = work_of(ctx.census, "availability: full sweep", service)
        incremental = work_of(ctx.census, "availability: incremental run", service)
        per_feed_full = full.scaled(1 / feeds_in(ctx.census, "availability: full sweep"))
        per_feed_incremental = incremental.scaled(1 / feeds_in(ctx.census, "availability: incremental run"))
        feeds = ctx.profile.providers
        month = _sum_work(
            per_feed_full.scaled(full_runs * feeds), per_feed_incremental.scaled((runs - full_runs) * feeds)
        )
        # the invocations are the runs (the census's are one per run, not one per feed)
        return replace(month, invocations=runs), runs, rule
    return Work(), runs, rule


def _sum_work(*works: Work) -> Work:
    total = Work()
    for work in works:
        calls: dict[str, float] = defaultdict(float, total.calls)
        for k, v in work.calls.items():
            calls[k] += v
        data: dict[str, float] = defaultdict(float, total.bytes)
        for k, v in work.bytes.items():
            data[k] += v
        total = Work(
            total.invocations + work.invocations,
            total.cpu_ms + work.cpu_ms,
            dict(calls),
            total.wru + work.wru,
            total.rru + work.rru,
            dict(data),
            total.log_bytes + work.log_bytes,
            total.log_lines + work.log_lines,
        )
    return total


def _feed_work(ctx: Context) -> Work:
    return work_of(ctx.census, "feed: a request", "feed").scaled(ctx.feed_requests)


@prices("AWS::Lambda::Function")
def _functions(ctx: Context) -> list[Line]:
    lines = []
    for lid, function in sorted(ctx.functions.items(), key=lambda item: item[1].service):
        service = function.service
        source = f"AWS::Lambda::Function {lid} ({function.memory_mb} MB, {function.architecture})"
        gb_price = "lambda_arm_gb_second" if function.architecture == "arm64" else "lambda_x86_gb_second"
        runs, rule = ctx.schedule_runs(service)
        if runs:
            month, runs, rule = _schedule_work(ctx, service)
            seconds = month.billed_ms(function.memory_mb, ctx.traffic.call_ms) / 1000
            per_run = seconds / max(runs, 1)
            lines.append(
                _line("Lambda", f"{service}: scheduled runs", f"{source}; {rule}", runs, "lambda_request", "fixed")
            )
            lines.append(
                _line(
                    "Lambda",
                    f"{service}: run duration (~{per_run:.1f} s a run for {ctx.profile.providers} providers)"
                    if service == "availability"
                    else f"{service}: run duration (~{per_run:.1f} s)",
                    source,
                    function.memory_mb / 1024 * seconds,
                    gb_price,
                    "fixed",
                )
            )
        elif service == "feed":
            work = _feed_work(ctx)
            seconds = work.billed_ms(function.memory_mb, ctx.traffic.call_ms) / 1000
            lines.append(
                _line("Lambda", "feed: busy feed reads", source, work.invocations, "lambda_request", "variable")
            )
            lines.append(
                _line("Lambda", "feed: duration", source, function.memory_mb / 1024 * seconds, gb_price, "variable")
            )
        elif service in ("ingest", "sync", "archive"):
            lines.append(
                Line(
                    "Lambda",
                    f"{service}: requests and duration (in the per-webhook lines)",
                    source,
                    0,
                    "-",
                    "-",
                    0.0,
                    "variable",
                )
            )
        elif service == "console":
            lines.append(
                Line(
                    "Lambda",
                    "console: runs only while an operator views the dashboard's widgets",
                    source,
                    0,
                    "-",
                    "-",
                    0.0,
                    "variable",
                )
            )
        else:
            lines.append(
                Line("Lambda", "a CDK custom resource: runs during deployments only", source, 0, "-", "-", 0.0, "fixed")
            )
    return lines


@prices("AWS::SQS::Queue")
def _queues(ctx: Context) -> list[Line]:
    lines = []
    queues = ctx.template.of_type("AWS::SQS::Queue")
    for lid, mapping in ctx.template.of_type("AWS::Lambda::EventSourceMapping").items():
        source_arn = mapping.get("Properties", {}).get("EventSourceArn")
        queue = next((ref for ref in _refs(source_arn) if ref in queues), None)
        if queue is None:
            continue
        fifo = bool(queues[queue].get("Properties", {}).get("FifoQueue"))
        polls = ctx.traffic.sqs_idle_pollers * SECONDS_PER_MONTH / ctx.traffic.sqs_long_poll_seconds
        lines.append(
            _line(
                "SQS",
                f"event source long polls of an idle queue ({ctx.traffic.sqs_idle_pollers} pollers, "
                f"{ctx.traffic.sqs_long_poll_seconds} s each)",
                f"AWS::SQS::Queue {queue} via AWS::Lambda::EventSourceMapping {lid}",
                polls,
                "sqs_fifo_request" if fifo else "sqs_standard_request",
                "fixed",
            )
        )
    # Reconcile's drift-check messages are in the per-webhook lines; nothing else is sent on a schedule.
    return lines


@prices("AWS::DynamoDB::Table")
def _tables(ctx: Context) -> list[Line]:
    lines = []
    tables = ctx.template.of_type("AWS::DynamoDB::Table")
    # requests of the schedules and the feed reads (the webhooks' are in the per-webhook lines)
    for service in ("reconcile", "availability"):
        if service not in ctx.by_service:
            continue
        month, _, rule = _schedule_work(ctx, service)
        source = f"{_tables_called(month, tables)}; {rule}"
        lines.append(_line("DynamoDB", f"{service}: write units", source, month.wru, "ddb_wru", "fixed"))
        lines.append(_line("DynamoDB", f"{service}: read units", source, month.rru, "ddb_rru", "fixed"))
    feed = _feed_work(ctx)
    if feed.invocations:
        lines.append(
            _line("DynamoDB", "feed: read units", _tables_called(feed, tables), feed.rru, "ddb_rru", "variable")
        )
    # storage and continuous backups of what has accumulated
    for lid, resource in sorted(tables.items()):
        props = resource.get("Properties", {})
        size = _table_bytes(ctx, lid)
        lines.append(
            _line(
                "DynamoDB",
                f"storage of {_role(lid)} after {ctx.traffic.months_in_operation} months",
                f"AWS::DynamoDB::Table {lid}",
                size / 1e9,
                "ddb_storage_gb_month",
                "variable",
            )
        )
        if (props.get("PointInTimeRecoverySpecification") or {}).get("PointInTimeRecoveryEnabled"):
            lines.append(
                _line(
                    "DynamoDB",
                    f"point-in-time recovery of {_role(lid)}",
                    f"AWS::DynamoDB::Table {lid}.PointInTimeRecoverySpecification",
                    size / 1e9,
                    "ddb_pitr_gb_month",
                    "variable",
                )
            )
    return lines


def _refs(value: Any) -> set[str]:
    return set(_refs_in(value))


def _role(table_lid: str) -> str:
    lowered = table_lid.lower()
    for role in ("state", "review", "audit", "availability"):
        if role in lowered:
            return f"the {role} table"
    return table_lid


def _tables_called(work: Work, tables: Mapping[str, Any]) -> str:
    roles = sorted(
        {call.split()[3] for call in work.calls if call.startswith("aws dynamodb ") and len(call.split()) > 3}
    )
    named = [lid for lid in tables if any(role in lid.lower() for role in roles)]
    return _sources(named, "AWS::DynamoDB::Table") if named else "AWS::DynamoDB::Table"


def _table_bytes(ctx: Context, table_lid: str) -> float:
    """Bytes table `table_lid` holds after `months_in_operation` months (items + DynamoDB's 100 B each)."""
    months = ctx.traffic.months_in_operation
    sizes = ctx.item_bytes
    role = _role(table_lid)
    overhead = DDB_ITEM_OVERHEAD_BYTES
    lineages = ctx.bookings * months
    if role == "the state table":
        state = sizes.get("state", {})
        uids = 1 + ctx.traffic.webhooks_per_booking.get("webhook: reschedule", 0.0)
        return lineages * (
            state.get("lineage", 1000.0)
            + overhead
            + uids * (state.get("uid", 60.0) + overhead)
            + state.get("person", 80.0)
            + overhead
        )
    if role == "the audit table":
        return ctx.webhooks * months * (sizes.get("audit", {}).get("lineage", 700.0) + overhead)
    if role == "the review table":
        parked = ctx.webhooks * ctx.traffic.review_share
        bodies = parked * min(months * 30.0, ctx.traffic.review_body_days) / 30.0
        return parked * months * (ctx.traffic.review_item_bytes + overhead) + bodies * (
            ctx.traffic.review_body_bytes + overhead
        )
    if role == "the availability table":
        return ctx.profile.providers * 20 * (150.0 + overhead)  # a feed's meta and its busy intervals
    return 0.0


@prices("AWS::Backup::BackupPlan")
def _backups(ctx: Context) -> list[Line]:
    lines = []
    selected: dict[str, list[str]] = defaultdict(list)
    for lid in ctx.template.of_type("AWS::Backup::BackupSelection"):
        plan = next(
            (r for r in ctx.template.refs_in(lid) if r in ctx.template.of_type("AWS::Backup::BackupPlan")), None
        )
        tables = [r for r in ctx.template.refs_in(lid) if r in ctx.template.of_type("AWS::DynamoDB::Table")]
        if plan:
            selected[plan] += tables
    for plan, resource in ctx.template.of_type("AWS::Backup::BackupPlan").items():
        size = sum(_table_bytes(ctx, table) for table in selected.get(plan, []))
        for rule in resource.get("Properties", {}).get("BackupPlan", {}).get("BackupPlanRule", []):
            lifecycle = rule.get("Lifecycle") or {}
            keep_days = float(lifecycle.get("DeleteAfterDays", 35))
            per_month = runs_per_month(rule["ScheduleExpression"], HOURS_PER_MONTH)
            points = min(keep_days, ctx.traffic.months_in_operation * 30.4) * per_month / 30.4
            cold_after = lifecycle.get("MoveToColdStorageAfterDays")
            warm_points = min(points, float(cold_after) * per_month / 30.4) if cold_after else points
            source = (
                f"AWS::Backup::BackupPlan {plan} rule {rule['RuleName']} ({rule['ScheduleExpression']}, "
                f"kept {keep_days:g} days) of {len(selected.get(plan, []))} tables"
            )
            lines.append(
                _line(
                    "AWS Backup",
                    f"{rule['RuleName']} recovery points, warm ({warm_points:.0f} full copies of the tables)",
                    source,
                    warm_points * size / 1e9,
                    "backup_ddb_warm_gb_month",
                    "variable",
                )
            )
            if points > warm_points:
                lines.append(
                    _line(
                        "AWS Backup",
                        f"{rule['RuleName']} recovery points, cold",
                        source,
                        (points - warm_points) * size / 1e9,
                        "backup_ddb_cold_gb_month",
                        "variable",
                    )
                )
    return lines


@prices("AWS::S3::Bucket")
def _buckets(ctx: Context) -> list[Line]:
    lines = []
    months = ctx.traffic.months_in_operation
    objects = [work_of(ctx.census, activity, "archive") for activity in ctx.traffic.webhooks_per_booking]
    records = sum(w.remote_calls("s3") for w in objects)
    object_bytes = sum(w.bytes.get("s3 objects", 0.0) for w in objects) / max(records, 1)
    for lid, resource in sorted(ctx.template.of_type("AWS::S3::Bucket").items()):
        props = resource.get("Properties", {})
        retention = ((props.get("ObjectLockConfiguration") or {}).get("Rule") or {}).get("DefaultRetention") or {}
        if retention:
            kept_months = min(months, float(retention.get("Days", 0)) / 30.4)
            stored = ctx.webhooks * kept_months * object_bytes
            lines.append(
                _line(
                    "S3",
                    f"WORM audit copies ({retention.get('Mode')} {retention.get('Days')} days; "
                    f"~{object_bytes:.0f} B each) after {months} months",
                    f"AWS::S3::Bucket {lid}",
                    stored / 1e9,
                    "s3_standard_gb_month",
                    "variable",
                )
            )
            continue
        # the access-log bucket: one ~400-byte record per request to the archive, kept by its lifecycle rule
        expiry = min(
            (
                float(r.get("ExpirationInDays", 365))
                for r in (props.get("LifecycleConfiguration") or {}).get("Rules", [])
            ),
            default=365.0,
        )
        stored = ctx.webhooks * min(months, expiry / 30.4) * 400
        lines.append(
            _line(
                "S3",
                "server access logs of the archive",
                f"AWS::S3::Bucket {lid}",
                stored / 1e9,
                "s3_standard_gb_month",
                "variable",
            )
        )
    return lines


@prices("AWS::Logs::LogGroup")
def _log_groups(ctx: Context) -> list[Line]:
    """Ingestion (schedules and feeds here; webhooks in the per-webhook lines), data protection scans and
    the archived storage of every log group."""
    lines = []
    writer = ctx.template.function_of_log_group()
    months = ctx.traffic.months_in_operation
    per_webhook_bytes = _per_webhook_log_bytes(ctx)
    flow_groups = {
        group for lid in ctx.template.of_type("AWS::EC2::FlowLog") for group in ctx.template.log_groups_served_by(lid)
    }
    access_groups = {
        group
        for lid in ctx.template.of_type("AWS::ApiGateway::Stage")
        for group in ctx.template.log_groups_served_by(lid)
    }
    for lid, resource in sorted(ctx.template.of_type("AWS::Logs::LogGroup").items()):
        props = resource.get("Properties", {})
        fixed, variable, what = 0.0, 0.0, "written only on errors or blocked requests"
        function = ctx.functions.get(writer.get(lid, ""))
        if function is not None:
            service = function.service
            what = f"{service or 'a CDK custom resource'}'s log"
            if service in ("reconcile", "availability"):
                month, runs, _ = _schedule_work(ctx, service)
                fixed = month.log_bytes + month.log_lines * LOG_EVENT_OVERHEAD_BYTES + runs * LAMBDA_PLATFORM_LOG_BYTES
                lines.append(
                    _line(
                        "CloudWatch Logs",
                        f"ingestion: {service}",
                        f"AWS::Logs::LogGroup {lid}",
                        fixed / 1e9,
                        "cw_logs_ingest_gb",
                        "fixed",
                    )
                )
            elif service == "feed":
                work = _feed_work(ctx)
                variable = work.log_bytes + work.log_lines * LOG_EVENT_OVERHEAD_BYTES
                variable += work.invocations * LAMBDA_PLATFORM_LOG_BYTES
                lines.append(
                    _line(
                        "CloudWatch Logs",
                        "ingestion: feed",
                        f"AWS::Logs::LogGroup {lid}",
                        variable / 1e9,
                        "cw_logs_ingest_gb",
                        "variable",
                    )
                )
            else:
                variable = per_webhook_bytes.get(service, 0.0) * ctx.webhooks  # ingested: per-webhook lines
        elif lid in access_groups:
            what = "the API access log"
            variable = per_webhook_bytes.get("access", 0.0) * (ctx.webhooks + ctx.feed_requests)
            if ctx.feed_requests:
                feed_bytes = per_webhook_bytes.get("access", 0.0) * ctx.feed_requests
                lines.append(
                    _line(
                        "CloudWatch Logs",
                        "ingestion: API access log of the busy feed reads",
                        f"AWS::Logs::LogGroup {lid}",
                        feed_bytes / 1e9,
                        "cw_logs_ingest_gb",
                        "variable",
                    )
                )
        elif lid in flow_groups:
            what = "VPC flow logs"
            invocations = {part: 0.0 for part in ("fixed", "variable")}
            for f in ctx.functions.values():
                count, part = _invocations(ctx, f)
                invocations[part] += count * (2 if f.service == "sync" else 1)  # the drift checks' runs
            per = ctx.traffic.flow_records_per_invocation * ctx.traffic.flow_record_bytes
            fixed, variable = invocations["fixed"] * per, invocations["variable"] * per
            lines.append(
                _line(
                    "CloudWatch Logs",
                    "ingestion: VPC flow logs (schedules)",
                    f"AWS::Logs::LogGroup {lid}",
                    fixed / 1e9,
                    "cw_logs_ingest_gb",
                    "fixed",
                )
            )
            lines.append(
                _line(
                    "CloudWatch Logs",
                    "ingestion: VPC flow logs (webhooks)",
                    f"AWS::Logs::LogGroup {lid}",
                    variable / 1e9,
                    "cw_logs_ingest_gb",
                    "variable",
                )
            )
        monthly = fixed + variable
        if props.get("DataProtectionPolicy") and monthly:
            for part, amount in (("fixed", fixed), ("variable", variable)):
                if amount:
                    lines.append(
                        _line(
                            "CloudWatch Logs",
                            f"data protection scan: {what}",
                            f"AWS::Logs::LogGroup {lid}.DataProtectionPolicy",
                            amount / 1e9,
                            "cw_logs_data_protection_gb",
                            part,
                        )
                    )
        retention_months = float(props.get("RetentionInDays", 3653)) / 30.4
        stored = monthly * min(months, retention_months) * ctx.traffic.log_compression
        if stored:
            lines.append(
                _line(
                    "CloudWatch Logs",
                    f"archived storage: {what} (kept {props.get('RetentionInDays')} days, after {months} months)",
                    f"AWS::Logs::LogGroup {lid}",
                    stored / 1e9,
                    "cw_logs_storage_gb_month",
                    "variable",
                )
            )
    return lines


def _per_webhook_log_bytes(ctx: Context) -> dict[str, float]:
    """Log bytes per webhook by writer (ingest, sync incl. its drift check, archive, the API access log), from
    the per-webhook model's inputs."""
    found = ctx.per_webhook.get("_log_bytes")
    return dict(found[0]) if found else {}  # type: ignore[call-overload]


@prices("AWS::ApiGateway::Stage")
def _api(ctx: Context) -> list[Line]:
    lines = []
    methods = ctx.template.of_type("AWS::ApiGateway::Method")
    for lid, resource in ctx.template.of_type("AWS::ApiGateway::Stage").items():
        props = resource.get("Properties", {})
        lines.append(
            _line(
                "API Gateway",
                "REST requests: busy feed reads",
                f"AWS::ApiGateway::Stage {lid}",
                ctx.feed_requests,
                "apigw_rest_request",
                "variable",
            )
        )
        detailed = any(s.get("MetricsEnabled") for s in props.get("MethodSettings", []))
        if not detailed:
            continue
        for method_lid, method in sorted(methods.items()):
            verb = method.get("Properties", {}).get("HttpMethod")
            rate = (ctx.webhooks if verb == "POST" else ctx.feed_requests) / HOURS_PER_MONTH
            share = billed_share(rate)
            lines.append(
                _line(
                    "CloudWatch",
                    f"detailed API metrics of {verb} ({len(APIGW_DETAILED_METRICS)} metrics, billed "
                    f"in {share:.0%} of hours)",
                    f"AWS::ApiGateway::Stage {lid}.MethodSettings.MetricsEnabled x "
                    f"AWS::ApiGateway::Method {method_lid}",
                    len(APIGW_DETAILED_METRICS) * share,
                    "cw_custom_metric_month",
                    "fixed" if share >= 0.999 else "variable",
                )
            )
    return lines


@prices("AWS::XRay::SamplingRule")
def _xray(ctx: Context) -> list[Line]:
    lines = []
    for lid, resource in ctx.template.of_type("AWS::XRay::SamplingRule").items():
        rule = resource.get("Properties", {}).get("SamplingRule", {})
        traces = ctx.feed_requests * float(rule.get("FixedRate", 0.05))
        lines.append(
            _line(
                "X-Ray",
                f"traces of busy feed reads ({float(rule.get('FixedRate', 0)):.0%} sampled)",
                f"AWS::XRay::SamplingRule {lid}",
                traces,
                "xray_trace",
                "variable",
            )
        )
    return lines


def _aws_calls_by_service(ctx: Context) -> dict[str, tuple[float, float]]:
    """AWS API calls a month by service (fixed: schedules; variable: webhooks and feed reads)."""
    found: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    works: list[tuple[Work, int]] = []
    for service in ("reconcile", "availability"):
        if service in ctx.by_service:
            works.append((_schedule_work(ctx, service)[0], 0))
    works.append((_feed_work(ctx), 1))
    for activity, per_booking in ctx.traffic.webhooks_per_booking.items():
        for function in ("ingest", "sync", "archive"):
            works.append((work_of(ctx.census, activity, function).scaled(ctx.bookings * per_booking), 1))
    for work, index in works:
        for call, count in work.calls.items():
            if call.startswith("aws "):
                found[call.split()[1]][index] += count
    return {service: (counts[0], counts[1]) for service, counts in found.items()}


def _internet_bytes(ctx: Context, *, include_s3: bool) -> tuple[float, float]:
    """Bytes a month to the EHR, the Cal.com API (and S3 without a gateway endpoint): (schedules, webhooks)."""
    fixed = sum(
        sum(v for k, v in _schedule_work(ctx, service)[0].bytes.items() if k in ("ehr", "calcom"))
        for service in ("reconcile", "availability")
        if service in ctx.by_service
    )
    variable = 0.0
    for activity, per_booking in ctx.traffic.webhooks_per_booking.items():
        for function in ("sync", "archive"):
            work = work_of(ctx.census, activity, function)
            keys = ("ehr", "calcom", "s3 objects") if include_s3 else ("ehr", "calcom")
            variable += sum(v for k, v in work.bytes.items() if k in keys) * ctx.bookings * per_booking
    drift = work_of(ctx.census, "reconcile: a booking in the window", "sync")
    variable += drift.bytes.get("ehr", 0.0) * ctx.webhooks
    return fixed, variable


# --- the metrics the code emits ------------------------------------------------------------------------


def metric_lines(ctx: Context) -> list[Line]:
    """One line per distinct metric x dimension values the code emits (EMF census), billed for the hours in
    which it is emitted: schedules every hour, webhook metrics in the hours with a webhook of their kind."""
    from bench.emf_census import distinct_metrics  # noqa: PLC0415

    runs = {service: ctx.schedule_runs(service)[0] / HOURS_PER_MONTH for service in ("reconcile", "availability")}
    webhooks_per_hour = ctx.webhooks / HOURS_PER_MONTH
    # a reconcile run lists the booking changes since the previous run
    changes_per_run = webhooks_per_hour / runs["reconcile"] if runs["reconcile"] else 0.0
    per_hour: dict[tuple[str, str], float] = {}
    for activity, share in ctx.traffic.webhooks_per_booking.items():
        for function_name in ("ingest", "sync", "archive"):
            per_hour[(activity, function_name)] = ctx.bookings * share / HOURS_PER_MONTH
    for function_name in ("ingest", "sync", "archive"):
        per_hour[("webhook: breaks a warn rule", function_name)] = (
            ctx.bookings * ctx.traffic.rule_warning_share / HOURS_PER_MONTH
        )
    per_hour |= {
        # every booking change reconcile lists (each webhook) gets a drift check by the sync
        ("reconcile: a booking in the window", "sync"): webhooks_per_hour,
        ("reconcile: a booking in the window", "reconcile"): runs["reconcile"] * (1 - math.exp(-changes_per_run)),
        ("reconcile: nothing in the window", "reconcile"): runs["reconcile"] * math.exp(-changes_per_run),
        ("feed: a request", "feed"): ctx.feed_requests / HOURS_PER_MONTH,
    }
    function = ctx.by_service.get("availability")
    sweep_minutes = float(function.environment.get("AVAILABILITY_FULL_SWEEP_MINUTES", 60)) if function else 60.0
    full_per_hour = min(runs["availability"], 60 / sweep_minutes)
    per_hour[("availability: full sweep", "availability")] = full_per_hour
    per_hour[("availability: incremental run", "availability")] = runs["availability"] - full_per_hour
    per_hour[("availability: first run (creates the feeds)", "availability")] = 0.0  # once, at deployment
    lines = []
    for (function_name, metric, names, values), activities in sorted(distinct_metrics(ctx.census).items()):
        function = ctx.by_service.get(function_name)
        namespace = function.environment.get("POWERTOOLS_METRICS_NAMESPACE", "?") if function else "?"
        rate = sum(per_hour.get((activity, function_name), 0.0) for activity in activities)
        if dict(values).get("rule"):
            rate /= max(ctx.traffic.rules_in_use, 1)
            copies = ctx.traffic.rules_in_use
        else:
            copies = 1
        dims = ", ".join(f"{n}={function_name if n == 'service' else dict(values).get(n, '?')}" for n in names)
        if dict(values).get("rule"):
            dims = dims.replace(f"rule={dict(values)['rule']}", f"rule=<each of {copies} rules in use>")
        failure = all("(failure)" in activity for activity in activities)
        share = billed_share(rate)
        source = f"EMF {namespace} {metric} {{{dims}}} from {function.logical_id if function else function_name}"
        scheduled = function_name in ("reconcile", "availability")  # emitted with no booking at all
        note = "emitted only on failures: billed for the hours they happen" if failure else ""
        lines.append(
            _line(
                "CloudWatch",
                f"custom metric {metric} ({share:.0%} of hours)",
                source,
                copies * share,
                "cw_custom_metric_month",
                "fixed" if scheduled else "variable",
                note=note,
            )
        )
    return lines


# --- the per-webhook model, as lines ----------------------------------------------------------------------


def per_webhook_lines(ctx: Context) -> list[Line]:
    """The per-webhook model's lines (`bench.cost.model`) for the profile's webhooks."""
    lines = []
    for name, (units, price, source) in ctx.per_webhook.items():
        if name.startswith("_") or not units:
            continue
        lines.append(
            _line(
                "per webhook",
                name,
                source,
                float(units) * ctx.webhooks,
                price,
                "variable",
                unit=f"{PRICE[price].unit} ({float(units):.4g} a webhook)",
            )
        )
    return lines


# --- the bill ----------------------------------------------------------------------------------------------


@dataclass
class Bill:
    profile: Profile
    variant: str
    lines: list[Line]
    free_tier_credit: float
    notes: list[str]

    @property
    def fixed(self) -> float:
        return sum(line.usd for line in self.lines if line.part == "fixed")

    @property
    def variable(self) -> float:
        return sum(line.usd for line in self.lines if line.part == "variable")

    @property
    def total(self) -> float:
        return self.fixed + self.variable

    def by_service(self) -> dict[str, float]:
        found: dict[str, float] = defaultdict(float)
        for line in self.lines:
            found[line.service] += line.usd
        return dict(sorted(found.items(), key=lambda item: -item[1]))

    def as_dict(self) -> dict[str, Any]:
        return {
            "profile": asdict(self.profile),
            "variant": self.variant,
            "fixed_usd": round(self.fixed, 2),
            "variable_usd": round(self.variable, 2),
            "total_usd": round(self.total, 2),
            "free_tier_credit_usd": round(self.free_tier_credit, 2),
            "by_service_usd": {k: round(v, 2) for k, v in self.by_service().items()},
            "notes": self.notes,
            "lines": [
                {**asdict(line), "usd": round(line.usd, 4), "quantity": round(line.quantity, 4)} for line in self.lines
            ],
        }


def unpriced_types(template: Template) -> list[str]:
    """Resource types of `template` the bill neither prices nor lists as free (the coverage test's check)."""
    return sorted(template.types() - set(PRICED_TYPES) - set(FREE_TYPES))


def free_tier_credit(lines: Iterable[Line], dashboard_metrics: int) -> float:
    """What the always-free allowances would take off the bill in an account of the stack's own."""
    quantities: dict[str, float] = defaultdict(float)
    prices_of: dict[str, float] = {}
    for line in lines:
        if line.price in PRICE:
            quantities[line.price] += line.quantity
            prices_of[line.price] = PRICE[line.price].usd
    credit = 0.0
    for name, allowance in FREE_TIER.items():
        if name == "cw_dashboard_month" and dashboard_metrics > FREE_TIER_DASHBOARD_METRICS:
            continue
        credit += min(quantities.get(name, 0.0), allowance) * prices_of.get(name, 0.0)
    return credit


def dashboard_metrics(template: Template) -> int:
    """Metrics the dashboards' widgets read (for the free tier's 50-metric limit): every metric entry of
    every widget, the body's unresolved tokens read as text."""
    import json  # noqa: PLC0415

    total = 0
    for resource in template.of_type("AWS::CloudWatch::Dashboard").values():
        body = resource.get("Properties", {}).get("DashboardBody")
        parts = body["Fn::Join"][1] if isinstance(body, dict) and "Fn::Join" in body else [body]
        text = "".join(part if isinstance(part, str) else "TOKEN" for part in parts)
        try:
            document = json.loads(text)
        except ValueError:
            continue
        for widget in document.get("widgets", []):
            total += len((widget.get("properties") or {}).get("metrics") or [])
    return total


def bill(
    template: Template,
    census: Mapping[str, Any],
    profile: Profile,
    *,
    variant: str,
    per_webhook: Mapping[str, tuple[Any, str, str]],
    item_bytes: Mapping[str, Mapping[str, float]],
    traffic: Traffic | None = None,
) -> Bill:
    ctx = Context(template, census, profile, traffic or Traffic(), per_webhook, item_bytes)
    lines: list[Line] = []
    seen: set[Pricer] = set()
    for resource_type in sorted(template.types()):
        pricer = PRICED_TYPES.get(resource_type)
        if pricer is None or pricer in seen:
            continue
        seen.add(pricer)
        lines += pricer(ctx)
    lines += metric_lines(ctx)
    lines += per_webhook_lines(ctx)
    notes = []
    if "availability" in ctx.by_service:
        month, runs, _ = _schedule_work(ctx, "availability")
        seconds = month.billed_ms(ctx.by_service["availability"].memory_mb, ctx.traffic.call_ms) / 1000 / max(runs, 1)
        timeout = _timeout(template, ctx.by_service["availability"].logical_id)
        if timeout and seconds > 0.8 * timeout:
            notes.append(
                f"availability: a run for {profile.providers} providers takes ~{seconds:.0f} s of its "
                f"{timeout} s timeout (one EHR search after another)"
            )
    if template.of_type("AWS::SSM::Parameter") and _mapping_bytes(ctx) > SSM_ADVANCED_MAX_BYTES:
        notes.append(
            f"the clinic mapping for {profile.providers} providers (~{_mapping_bytes(ctx) / 1024:.0f} KB) does not fit "
            "an SSM parameter (8 KB at most): such a clinic deploys it through AppConfig (-c clinicConfigSource)"
        )
    unpriced = unpriced_types(template)
    if unpriced:
        notes.append(f"not priced: {', '.join(unpriced)}")
    credit = free_tier_credit(lines, dashboard_metrics(template))
    return Bill(profile, variant, lines, credit, notes)


def _timeout(template: Template, function_lid: str) -> int:
    return int(template.props(function_lid).get("Timeout", 3))
