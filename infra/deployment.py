"""Deployment settings read once from CDK context (`-c key=value` or cdk.json), typed and validated."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_logs as logs

from infra.constants import (
    AUDIT_ARCHIVE_RETENTION_DAYS,
    DEFAULT_RECONCILE_RATE,
    DEFAULT_STAGE,
    MAX_AUDIT_ARCHIVE_RETENTION_DAYS,
    MAX_REVIEW_BODY_RETENTION_DAYS,
    METRICS_NAMESPACE,
    MIN_AUDIT_ARCHIVE_RETENTION_DAYS,
    RECONCILE_TIMEOUT_SECONDS,
    REVIEW_BODY_RETENTION_DAYS,
    STAGES,
)
from shared.contracts import deployment

#: Used when no `ehrBaseUrl` is given: `.invalid` never resolves (RFC 6761), so sync fails closed
#: and messages wait in the queue until the real URL is deployed.
PLACEHOLDER_EHR_BASE_URL = "https://ehr.invalid/fhir"

#: The sync function's EHR write dialects and route names: one definition for the stack and the functions.
EHR_PROFILES = deployment.EHR_PROFILES
#: An interface engine's MLLP endpoint (the `hl7v2` profile): TLS, or plain TCP over a VPN.
_MLLP_URL = re.compile(r"^(?P<scheme>mllps?)://(?P<host>[A-Za-z0-9.\-]{1,253}):(?P<port>\d{1,5})$")
_IPV4 = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$")
_CIDR = re.compile(r"^(\d{1,3}\.){3}\d{1,3}/(\d{1,2})$")
ROUTE_NAME_PATTERN = deployment.ROUTE_NAME_PATTERN
DEFAULT_ROUTE = deployment.DEFAULT_ROUTE
#: Each route adds about 200 bytes of JSON (URL, profile, secret ARN) to the sync function's
#: environment, which Lambda caps at 4 KB in total; six routes with 200-character URLs still fit.
MAX_EHR_ROUTES = 6
MAX_EHR_URL_LENGTH = 200
#: `https://healthlake.<region>.amazonaws.com/datastore/<data store id>/r4/`: the region and the
#: data store id name the data store the sync role may use.
_HEALTHLAKE_URL = re.compile(
    r"^https://healthlake\.(?P<region>[a-z]{2}(?:-[a-z]+)+-\d+)\.amazonaws\.com"
    r"/datastore/(?P<datastore>[A-Za-z0-9]{1,32})/r4/?$"
)
#: AppConfig ids (not names): an IAM resource ARN can only be written with the ids.
_APPCONFIG_ID = r"[a-z0-9]{4,7}"
_APPCONFIG_SOURCE = re.compile(
    rf"^appconfig:(?P<application>{_APPCONFIG_ID})/(?P<environment>{_APPCONFIG_ID})/(?P<profile>{_APPCONFIG_ID})$"
)


#: An IAM role in any account and partition (the key policy names operators' roles by ARN).
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
#: Who may assume an operator role: an IAM role or user ARN, an account root ARN, or an account id.
_PRINCIPAL = re.compile(r"^(\d{12}|arn:aws[a-z-]*:iam::\d{12}:(root|(role|user)/[\w+=,.@/-]{1,512}))$")


_RATE = re.compile(r"^rate\((?P<value>[1-9][0-9]*) (?P<unit>minute|minutes|hour|hours|day|days)\)$")
_UNIT_MINUTES = {"minute": 1, "hour": 60, "day": 24 * 60}


class ConfigError(ValueError):
    """A context value is missing or invalid; the message names the key."""


def rate_minutes(expression: str) -> int:
    """Minutes between runs of an EventBridge `rate(...)` expression; ConfigError if it is not one.

    EventBridge wants the singular unit for 1 (`rate(1 hour)`) and the plural otherwise.
    """
    match = _RATE.match(expression.strip())
    value = int(match["value"]) if match else 0
    if not match or (value == 1) != (not match["unit"].endswith("s")):
        raise ConfigError(
            f"context 'reconcileRate' must be an EventBridge rate such as 'rate(15 minutes)' or "
            f"'rate(1 hour)', got {expression!r}"
        )
    return value * _UNIT_MINUTES[match["unit"].rstrip("s")]


@dataclass(frozen=True)
class HealthLakeDatastore:
    region: str
    datastore_id: str


@dataclass(frozen=True)
class EhrEndpoint:
    """An EHR the sync function writes to: the default one (`ehrBaseUrl`/`ehrProfile`) or a route."""

    name: str
    base_url: str
    profile: str = "generic"

    @property
    def mllp_port(self) -> int | None:
        """The interface engine's port, for an `hl7v2` endpoint."""
        match = _MLLP_URL.match(self.base_url)
        return int(match["port"]) if match and self.profile == "hl7v2" else None

    @property
    def healthlake(self) -> HealthLakeDatastore | None:
        """The HealthLake data store behind the URL, for the `healthlake` profile."""
        match = _HEALTHLAKE_URL.match(self.base_url)
        if self.profile != "healthlake" or not match:
            return None
        return HealthLakeDatastore(region=match["region"], datastore_id=match["datastore"])


@dataclass(frozen=True)
class AppConfigSource:
    """`-c clinicConfigSource=appconfig:<application id>/<environment id>/<profile id>`."""

    application_id: str
    environment_id: str
    profile_id: str

    @property
    def uri(self) -> str:
        """The sync function's CLINIC_CONFIG_SOURCE."""
        return f"appconfig:{self.application_id}/{self.environment_id}/{self.profile_id}"


@dataclass(frozen=True)
class DeploymentConfig:
    stage: str
    alarm_emails: tuple[str, ...] = ()
    alarm_https_urls: tuple[str, ...] = ()
    waf: bool = True
    vpc: bool = False
    #: `-c ehrSmartAuth=true`: an EHR auth secret is of type `smart`, so the functions that talk to the EHR
    #: get the SMART layer (`cryptography`); without it the base layer stays small (docs/performance.md).
    ehr_smart_auth: bool = False
    ehr_base_url: str = PLACEHOLDER_EHR_BASE_URL
    ehr_profile: str = "generic"
    #: Extra EHR endpoints (`-c ehrRoutes=...`), in the order given.
    ehr_routes: tuple[EhrEndpoint, ...] = ()
    clinic_config_file: str | None = None
    #: None: the clinic mapping lives in the stack's SSM parameter (the default).
    clinic_config_appconfig: AppConfigSource | None = None
    api_gateway_account_role: bool = True
    reconcile_rate: str = DEFAULT_RECONCILE_RATE
    #: The interface engine's address (CIDR) for the `hl7v2` profile: the only MLLP egress allowed.
    mllp_peer_cidr: str | None = None
    #: `mllp://` (plain TCP) endpoints are allowed: the path to the engine is a site-to-site VPN.
    mllp_plaintext: bool = False

    @property
    def hl7v2_endpoints(self) -> tuple[EhrEndpoint, ...]:
        return tuple(e for e in self.ehr_endpoints if e.profile == "hl7v2")

    #: Days each archived audit record is locked (Object Lock, COMPLIANCE) and kept in the WORM bucket.
    audit_archive_retention_days: int = AUDIT_ARCHIVE_RETENTION_DAYS["staging"]
    #: Days a parked message keeps its body (PHI) in the review table.
    review_body_retention_days: int = REVIEW_BODY_RETENTION_DAYS
    #: IAM roles of the people who run the operator CLI against AWS (review, DLQ, audit): the data
    #: key's policy lets them use the key through DynamoDB, SQS and Secrets Manager.
    operator_role_arns: tuple[str, ...] = ()
    #: Who may assume the stack's `OperatorReadOnly` role (on-call) and `OperatorAdmin` role: IAM role
    #: or user ARNs, account root ARNs or account ids (`infra/constructs/operators.py`). None named: the
    #: stack's own account, whose IAM administrators then decide who may assume the role.
    operator_read_only_principals: tuple[str, ...] = ()
    operator_admin_principals: tuple[str, ...] = ()
    #: The clinic's Cal.com organization (`-c calcomOrgId=88`): reconcile lists every host's bookings
    #: and the roster check every member (an org admin API key).
    calcom_org_id: int | None = None
    #: `-c natGateways=1|2` (VPC mode): NAT gateways for the egress to the EHR and Cal.com. None: one per AZ
    #: in prod, one in staging.
    nat_gateway_count: int | None = None

    @property
    def ehr_endpoints(self) -> tuple[EhrEndpoint, ...]:
        """The default EHR first, then every route."""
        return (EhrEndpoint(DEFAULT_ROUTE, self.ehr_base_url, self.ehr_profile), *self.ehr_routes)

    @property
    def healthlake_datastores(self) -> tuple[HealthLakeDatastore, ...]:
        """Every HealthLake data store an endpoint writes to, once each."""
        found = [endpoint.healthlake for endpoint in self.ehr_endpoints]
        return tuple(dict.fromkeys(store for store in found if store is not None))

    @property
    def reconcile_rate_minutes(self) -> int:
        return rate_minutes(self.reconcile_rate)

    @property
    def is_prod(self) -> bool:
        return self.stage == "prod"

    @property
    def removal_policy(self) -> cdk.RemovalPolicy:
        """Data and logs survive a `cdk destroy` in prod; staging tears down completely."""
        return cdk.RemovalPolicy.RETAIN if self.is_prod else cdk.RemovalPolicy.DESTROY

    @property
    def log_retention(self) -> logs.RetentionDays:
        return logs.RetentionDays.TWO_YEARS if self.is_prod else logs.RetentionDays.ONE_YEAR

    @property
    def nat_gateways(self) -> int:
        """One NAT per AZ in prod (no single point of failure for EHR egress), one in staging, unless
        `-c natGateways` says otherwise (one NAT for a small deployment: ~USD 36 a month less, and EHR egress
        waits in the queue while that NAT's AZ is down)."""
        if self.nat_gateway_count is not None:
            return self.nat_gateway_count
        return 2 if self.is_prod else 1

    @property
    def stack_name(self) -> str:
        return f"CalEhrBridge-{self.stage}"

    @property
    def metrics_namespace(self) -> str:
        """The functions' EMF namespace and the alarms' (one per stage: staging never trips prod)."""
        return f"{METRICS_NAMESPACE}/{self.stage}"

    @property
    def has_alarm_subscribers(self) -> bool:
        return bool(self.alarm_emails or self.alarm_https_urls)


def _flag(raw: Any, key: str, default: bool) -> bool:
    if raw is None:
        return default
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in {"true", "1", "yes", "on"}:
        return True
    if text in {"false", "0", "no", "off"}:
        return False
    raise ConfigError(f"context {key!r} must be true or false, got {raw!r}")


def _list(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    items = raw if isinstance(raw, list) else str(raw).split(",")
    return tuple(item.strip() for item in items if str(item).strip())


def _days(raw: Any, key: str, *, default: int, low: int, high: int) -> int:
    if raw is None or raw == "":
        return default
    text = str(raw).strip()
    if not text.isdigit() or not low <= int(text) <= high:
        raise ConfigError(f"context {key!r} must be a whole number of days from {low} to {high}, got {raw!r}")
    return int(text)


def _operator_roles(raw: Any) -> tuple[str, ...]:
    roles = _list(raw)
    for role in roles:
        if not _ROLE_ARN.match(role):
            raise ConfigError(
                f"context 'operatorRoleArns' must be IAM role ARNs (arn:aws:iam::<account>:role/<name>), got {role!r}"
            )
    return roles


def _operator_principals(raw: Any, key: str) -> tuple[str, ...]:
    principals = _list(raw)
    for principal in principals:
        if not _PRINCIPAL.match(principal):
            raise ConfigError(
                f"context {key!r} must be IAM role or user ARNs, account root ARNs or 12-digit account ids, "
                f"got {principal!r}"
            )
    return principals


def _ehr_url(url: str, key: str, profile: str = "generic") -> str:
    if profile == "hl7v2":
        match = _MLLP_URL.match(url)
        if not match or not 0 < int(match["port"]) < 65536:
            raise ConfigError(f"context {key!r} must be mllps://<host>:<port> (or mllp:// over a VPN) for hl7v2")
        return url
    if not url.startswith("https://"):
        raise ConfigError(f"context {key!r} must start with https:// (PHI never travels in clear text)")
    if len(url) > MAX_EHR_URL_LENGTH:
        raise ConfigError(f"context {key!r} must be at most {MAX_EHR_URL_LENGTH} characters")
    if re.search(r"\s", url) or "@" in url.split("/", 3)[2]:
        # Credentials belong in the EHR auth secret; a URL ends up in the function's configuration.
        raise ConfigError(f"context {key!r} must not contain credentials or spaces")
    return url


def _ehr_profile(raw: Any, key: str) -> str:
    profile = str(raw or "generic").strip()
    if profile not in EHR_PROFILES:
        raise ConfigError(f"context {key!r} must be one of {', '.join(EHR_PROFILES)}, got {profile!r}")
    return profile


def _check_healthlake(endpoint: EhrEndpoint, key: str) -> None:
    if endpoint.profile == "healthlake" and endpoint.healthlake is None:
        raise ConfigError(
            f"context {key!r}: the healthlake profile needs the data store's endpoint, "
            "https://healthlake.<region>.amazonaws.com/datastore/<data store id>/r4/ "
            "(the sync role is granted that data store only)"
        )


def _ehr_routes(raw: Any) -> tuple[EhrEndpoint, ...]:
    """`-c ehrRoutes='{"cardiology": {"baseUrl": "https://...", "profile": "generic"}}'` (or an object in cdk.json)."""
    if raw is None or raw == "":
        return ()
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise ConfigError("context 'ehrRoutes' must be a JSON object of route name to {baseUrl, profile}") from None
    if not isinstance(raw, Mapping):
        raise ConfigError("context 'ehrRoutes' must be a JSON object of route name to {baseUrl, profile}")
    if len(raw) > MAX_EHR_ROUTES:
        raise ConfigError(
            f"context 'ehrRoutes' has {len(raw)} routes; at most {MAX_EHR_ROUTES} fit the sync function's "
            "4 KB environment"
        )
    routes = []
    for name, spec in raw.items():
        if name == DEFAULT_ROUTE:
            raise ConfigError("context 'ehrRoutes': 'default' is reserved for ehrBaseUrl/ehrProfile")
        if not isinstance(name, str) or not re.fullmatch(ROUTE_NAME_PATTERN, name):
            raise ConfigError(f"context 'ehrRoutes': route names must match {ROUTE_NAME_PATTERN}")
        key = f"ehrRoutes.{name}"
        if not isinstance(spec, Mapping) or "baseUrl" not in spec:
            raise ConfigError(f"context {key!r} must be an object with baseUrl (and optionally profile)")
        unknown = sorted(set(spec) - {"baseUrl", "profile"})
        if unknown:
            raise ConfigError(f"context {key!r} has unknown keys: {', '.join(map(str, unknown))}")
        profile = _ehr_profile(spec.get("profile"), f"{key}.profile")
        endpoint = EhrEndpoint(
            name=name, base_url=_ehr_url(str(spec["baseUrl"]), f"{key}.baseUrl", profile), profile=profile
        )
        _check_healthlake(endpoint, f"{key}.baseUrl")
        routes.append(endpoint)
    return tuple(routes)


def _clinic_config_appconfig(raw: Any) -> AppConfigSource | None:
    text = str(raw or "ssm").strip()
    if text == "ssm":
        return None
    match = _APPCONFIG_SOURCE.match(text)
    if not match:
        raise ConfigError(
            "context 'clinicConfigSource' must be 'ssm' or appconfig:<application id>/<environment id>/"
            f"<configuration profile id> (the ids, 4-7 lowercase letters or digits), got {text!r}"
        )
    return AppConfigSource(match["application"], match["environment"], match["profile"])


def config_from_context(context: Mapping[str, Any]) -> DeploymentConfig:
    """Build the config from a context mapping (what `app.node.try_get_context` would return)."""
    stage = str(context.get("stage") or DEFAULT_STAGE)
    if stage not in STAGES:
        raise ConfigError(f"context 'stage' must be one of {', '.join(STAGES)}, got {stage!r}")
    emails = _list(context.get("alarmEmail"))
    for email in emails:
        if "@" not in email:
            raise ConfigError(f"context 'alarmEmail' has an invalid address: {email!r}")
    urls = _list(context.get("alarmHttpsUrl"))
    for url in urls:
        if not url.startswith("https://"):
            raise ConfigError("context 'alarmHttpsUrl' must start with https://")
    ehr_profile = _ehr_profile(context.get("ehrProfile"), "ehrProfile")
    ehr_base_url = _ehr_url(str(context.get("ehrBaseUrl") or PLACEHOLDER_EHR_BASE_URL), "ehrBaseUrl", ehr_profile)
    _check_healthlake(EhrEndpoint(DEFAULT_ROUTE, ehr_base_url, ehr_profile), "ehrBaseUrl")
    ehr_routes = _ehr_routes(context.get("ehrRoutes"))
    clinic_config_file = context.get("clinicConfigFile")
    appconfig = _clinic_config_appconfig(context.get("clinicConfigSource"))
    if appconfig is not None and clinic_config_file:
        raise ConfigError(
            "context 'clinicConfigFile' deploys the mapping into the SSM parameter; with "
            "clinicConfigSource=appconfig:... deploy it through AppConfig instead"
        )
    if stage == "prod" and not (emails or urls):
        # Alarms that notify nobody are not monitoring: a prod stack must page someone.
        raise ConfigError(
            "a prod stack needs on-call subscribers: alarmEmail and/or alarmHttpsUrl in deploy/prod.json "
            "(or -c alarmEmail=... / -c alarmHttpsUrl=...); every alarm publishes to the on-call topic"
        )
    if stage == "prod" and ehr_base_url == PLACEHOLDER_EHR_BASE_URL:
        # A prod sync that points at a name that never resolves writes nothing: not a deployment.
        raise ConfigError(
            "a prod stack needs ehrBaseUrl (the EHR's FHIR R4 base URL, or mllps://host:port for hl7v2) "
            "in deploy/prod.json (or -c ehrBaseUrl=...)"
        )
    reconcile_rate = str(context.get("reconcileRate") or DEFAULT_RECONCILE_RATE).strip()
    if rate_minutes(reconcile_rate) * 60 < RECONCILE_TIMEOUT_SECONDS:
        raise ConfigError(
            f"context 'reconcileRate' must not be shorter than the reconcile timeout "
            f"({RECONCILE_TIMEOUT_SECONDS // 60} minutes), so that runs never overlap; got {reconcile_rate!r}"
        )
    vpc = _flag(context.get("vpc"), "vpc", default=False)
    mllp_plaintext = _flag(context.get("mllpPlaintext"), "mllpPlaintext", default=False)
    hl7v2 = [e for e in (EhrEndpoint(DEFAULT_ROUTE, ehr_base_url, ehr_profile), *ehr_routes) if e.profile == "hl7v2"]
    mllp_peer_cidr = _mllp_peer(context.get("mllpPeerCidr"), hl7v2, vpc=vpc, plaintext=mllp_plaintext)
    return DeploymentConfig(
        stage=stage,
        alarm_emails=emails,
        alarm_https_urls=urls,
        waf=_flag(context.get("waf"), "waf", default=True),
        ehr_smart_auth=_flag(context.get("ehrSmartAuth"), "ehrSmartAuth", default=False),
        vpc=vpc,
        ehr_base_url=ehr_base_url,
        ehr_profile=ehr_profile,
        ehr_routes=ehr_routes,
        clinic_config_file=str(clinic_config_file) if clinic_config_file else None,
        clinic_config_appconfig=appconfig,
        api_gateway_account_role=_flag(context.get("apiGatewayAccountRole"), "apiGatewayAccountRole", default=True),
        reconcile_rate=reconcile_rate,
        mllp_peer_cidr=mllp_peer_cidr,
        mllp_plaintext=mllp_plaintext,
        audit_archive_retention_days=_days(
            context.get("auditArchiveRetentionDays"),
            "auditArchiveRetentionDays",
            default=AUDIT_ARCHIVE_RETENTION_DAYS[stage],
            low=MIN_AUDIT_ARCHIVE_RETENTION_DAYS,
            high=MAX_AUDIT_ARCHIVE_RETENTION_DAYS,
        ),
        review_body_retention_days=_days(
            context.get("reviewBodyRetentionDays"),
            "reviewBodyRetentionDays",
            default=REVIEW_BODY_RETENTION_DAYS,
            low=1,
            high=MAX_REVIEW_BODY_RETENTION_DAYS,
        ),
        operator_role_arns=_operator_roles(context.get("operatorRoleArns")),
        operator_read_only_principals=_operator_principals(
            context.get("operatorReadOnlyPrincipals"), "operatorReadOnlyPrincipals"
        ),
        operator_admin_principals=_operator_principals(
            context.get("operatorAdminPrincipals"), "operatorAdminPrincipals"
        ),
        calcom_org_id=_org_id(context.get("calcomOrgId")),
        nat_gateway_count=_nat_gateways(context.get("natGateways"), vpc=vpc),
    )


def _nat_gateways(raw: Any, *, vpc: bool) -> int | None:
    if raw is None or raw == "":
        return None
    text = str(raw).strip()
    if text not in ("1", "2"):
        raise ConfigError(f"context 'natGateways' must be 1 or 2 (the VPC has two Availability Zones), got {raw!r}")
    if not vpc:
        raise ConfigError("context 'natGateways' applies to VPC mode only: add -c vpc=true or drop natGateways")
    return int(text)


def _org_id(raw: Any) -> int | None:
    if raw is None or raw == "":
        return None
    text = str(raw).strip()
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"context 'calcomOrgId' must be a Cal.com organization id (a positive number), got {raw!r}")
    return int(text)


def _mllp_peer(raw: Any, endpoints: list[EhrEndpoint], *, vpc: bool, plaintext: bool) -> str | None:
    """The interface engine's CIDR: given, or the /32 of an IPv4 endpoint host. hl7v2 needs VPC mode
    (the engine is reached through a VPN into the VPC) and plain TCP the explicit opt-in."""
    if not endpoints:
        return None
    if not vpc:
        raise ConfigError("the hl7v2 profile needs -c vpc=true: the interface engine is reached through the VPC")
    for endpoint in endpoints:
        if endpoint.base_url.startswith("mllp://") and not plaintext:
            raise ConfigError(
                f"EHR endpoint {endpoint.name!r} is plain TCP (mllp://): set -c mllpPlaintext=true only for a VPN"
            )
    if raw:
        text = str(raw).strip()
        match = _CIDR.match(text)
        octets = text.split("/")[0].split(".")
        if not match or int(match[2]) > 32 or any(int(o) > 255 for o in octets):
            raise ConfigError(f"context 'mllpPeerCidr' must be an IPv4 CIDR such as 10.20.0.15/32, got {text!r}")
        return text
    hosts = {(_MLLP_URL.match(e.base_url) or {"host": ""})["host"] for e in endpoints}
    if len(hosts) == 1 and _IPV4.match(next(iter(hosts))):
        return f"{next(iter(hosts))}/32"
    raise ConfigError("context 'mllpPeerCidr' is required: the interface engine's address for the security group")


CONTEXT_KEYS = (
    "stage",
    "alarmEmail",
    "alarmHttpsUrl",
    "waf",
    "ehrSmartAuth",
    "vpc",
    "ehrBaseUrl",
    "ehrProfile",
    "ehrRoutes",
    "clinicConfigFile",
    "clinicConfigSource",
    "apiGatewayAccountRole",
    "reconcileRate",
    "mllpPeerCidr",
    "mllpPlaintext",
    "auditArchiveRetentionDays",
    "reviewBodyRetentionDays",
    "operatorRoleArns",
    "operatorReadOnlyPrincipals",
    "operatorAdminPrincipals",
    "calcomOrgId",
    "natGateways",
)


def config_from_app(app: cdk.App) -> DeploymentConfig:
    return config_from_context({key: app.node.try_get_context(key) for key in CONTEXT_KEYS})
