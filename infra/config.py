"""Deployment settings read once from CDK context (`-c key=value` or cdk.json), typed and validated."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_logs as logs

from infra.constants import DEFAULT_RECONCILE_RATE, DEFAULT_STAGE, RECONCILE_TIMEOUT_SECONDS, STAGES

#: Used when no `ehrBaseUrl` is given: `.invalid` never resolves (RFC 6761), so sync fails closed
#: and messages wait in the queue until the real URL is deployed.
PLACEHOLDER_EHR_BASE_URL = "https://ehr.invalid/fhir"


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
class DeploymentConfig:
    stage: str
    alarm_emails: tuple[str, ...] = ()
    alarm_https_urls: tuple[str, ...] = ()
    waf: bool = True
    vpc: bool = False
    ehr_base_url: str = PLACEHOLDER_EHR_BASE_URL
    clinic_config_file: str | None = None
    api_gateway_account_role: bool = True
    reconcile_rate: str = DEFAULT_RECONCILE_RATE

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
        """One NAT per AZ in prod (no single point of failure for EHR egress), one in staging."""
        return 2 if self.is_prod else 1

    @property
    def stack_name(self) -> str:
        return f"CalEhrBridge-{self.stage}"


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
    ehr_base_url = str(context.get("ehrBaseUrl") or PLACEHOLDER_EHR_BASE_URL)
    if not ehr_base_url.startswith("https://"):
        raise ConfigError("context 'ehrBaseUrl' must start with https:// (PHI never travels in clear text)")
    clinic_config_file = context.get("clinicConfigFile")
    reconcile_rate = str(context.get("reconcileRate") or DEFAULT_RECONCILE_RATE).strip()
    if rate_minutes(reconcile_rate) * 60 < RECONCILE_TIMEOUT_SECONDS:
        raise ConfigError(
            f"context 'reconcileRate' must not be shorter than the reconcile timeout "
            f"({RECONCILE_TIMEOUT_SECONDS // 60} minutes), so that runs never overlap; got {reconcile_rate!r}"
        )
    return DeploymentConfig(
        stage=stage,
        alarm_emails=emails,
        alarm_https_urls=urls,
        waf=_flag(context.get("waf"), "waf", default=True),
        vpc=_flag(context.get("vpc"), "vpc", default=False),
        ehr_base_url=ehr_base_url,
        clinic_config_file=str(clinic_config_file) if clinic_config_file else None,
        api_gateway_account_role=_flag(context.get("apiGatewayAccountRole"), "apiGatewayAccountRole", default=True),
        reconcile_rate=reconcile_rate,
    )


CONTEXT_KEYS = (
    "stage",
    "alarmEmail",
    "alarmHttpsUrl",
    "waf",
    "vpc",
    "ehrBaseUrl",
    "clinicConfigFile",
    "apiGatewayAccountRole",
    "reconcileRate",
)


def config_from_app(app: cdk.App) -> DeploymentConfig:
    return config_from_context({key: app.node.try_get_context(key) for key in CONTEXT_KEYS})
