"""Typed settings, validated once at cold start. Logic never reads `os.environ` itself."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from shared.contracts.deployment import (
    CALCOM_API_BASE_URL,
    CLINIC_CONFIG_SOURCE_PATTERN,
    DEFAULT_ROUTE,
    REVIEW_BODY_RETENTION_DAYS,
    ROUTE_NAME_PATTERN,
    EhrProfileName,
)
from shared.contracts.queue import BACKOFF_BASE_SECONDS, BACKOFF_CAP_SECONDS

#: Slack on top of one EHR call's timeout before a sync batch stops taking records: the state and audit
#: writes around the call (shared/sync/time_budget.py).
DEFAULT_MARGIN_SECONDS = 5.0

#: Documented body limit for webhooks (Cal.com booking bodies are 3-10 KB; 256 KiB leaves room for
#: large seated events while staying well under SQS's message limit).
DEFAULT_MAX_BODY_BYTES = 256 * 1024

#: An http(s) URL without user info: credentials never travel in (and so never get logged with) a URL;
#: or, for the `hl7v2` profile, an interface engine's `mllps://host:port` (`mllp://` only over a VPN).
_BASE_URL_PATTERN = r"^(https?://[^/@\s?#]+(/\S*)?|mllps?://[A-Za-z0-9.\-]{1,253}:\d{1,5})$"


def _check_scheme(profile: str, base_url: str, plaintext: bool, names: tuple[str, str, str]) -> None:
    """`hl7v2` speaks MLLP, every other profile HTTPS; plain MLLP needs the explicit VPN opt-in."""
    url_name, profile_name, plaintext_name = names
    mllp = base_url.startswith("mllp")
    if (profile == "hl7v2") != mllp:
        raise PydanticCustomError(
            "ehr_scheme",
            "{url} must be mllps:// (or mllp://) exactly when {profile} is hl7v2",
            {"url": url_name, "profile": profile_name},
        )
    if base_url.startswith("mllp://") and not plaintext:
        raise PydanticCustomError(
            "mllp_plaintext",
            "{url} is plain TCP (mllp://): set {flag} only when the path is a VPN",
            {"url": url_name, "flag": plaintext_name},
        )


class SettingsError(RuntimeError):
    """The function's environment is incomplete or invalid: a deployment error, reported by name."""


class _Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    stage: str = Field(default="local", alias="STAGE")
    service: str = Field(default="cal-ehr-bridge", alias="POWERTOOLS_SERVICE_NAME")

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Self:
        """The function's settings from its environment (read once, by its composition root)."""
        try:
            return cls.model_validate(dict(os.environ if environ is None else environ))
        except ValidationError as exc:
            raise SettingsError(f"invalid function environment: {describe_errors(exc)}") from None


class EhrRoute(BaseModel):
    """One extra EHR endpoint of `EHR_ROUTES`, built exactly like the default one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str = Field(pattern=_BASE_URL_PATTERN)
    profile: EhrProfileName = "generic"
    #: Secrets Manager secret with the endpoint's auth document (see docs/ehr-support.md); optional.
    auth_secret_arn: str = Field(default="", pattern=r"^(arn:[\w\-]+:secretsmanager:\S+)?$")
    #: SigV4 region override for HealthLake (default: taken from the HealthLake host name).
    region: str = Field(default="", pattern=r"^([a-z]{2}(-[a-z]+)+-\d+)?$")
    #: `hl7v2` only: allow a plain-TCP `mllp://` endpoint (the path to the engine is a VPN).
    mllp_plaintext: bool = False

    @model_validator(mode="after")
    def _scheme(self) -> EhrRoute:
        _check_scheme(self.profile, self.base_url, self.mllp_plaintext, ("base_url", "profile", "mllp_plaintext"))
        return self


def _routes_document(raw: Any) -> Any:
    """`EHR_ROUTES` arrives as JSON text from the environment; a mapping passes through (tests, code)."""
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise PydanticCustomError("ehr_routes_json", "not valid JSON") from None
    if not isinstance(raw, Mapping):
        raise PydanticCustomError("ehr_routes_shape", "must be a JSON object of route name to endpoint")
    for position, name in enumerate(raw, start=1):
        if name == DEFAULT_ROUTE:
            raise PydanticCustomError(
                "ehr_route_reserved",
                "route name 'default' is reserved for EHR_BASE_URL/EHR_PROFILE/EHR_AUTH_SECRET_ARN",
            )
        if not isinstance(name, str) or not re.fullmatch(ROUTE_NAME_PATTERN, name):
            # The name itself is not echoed: whatever was typed there might be a URL or a token.
            raise PydanticCustomError(
                "ehr_route_name",
                "route name number {position} does not match {pattern}",
                {"position": position, "pattern": ROUTE_NAME_PATTERN},
            )
    return raw


class ArchiveSettings(_Settings):
    """The audit archive function: where the WORM copy goes and how long each object is locked."""

    bucket: str = Field(alias="AUDIT_ARCHIVE_BUCKET", min_length=3, max_length=63)
    retention_days: int = Field(alias="AUDIT_ARCHIVE_RETENTION_DAYS", ge=1, le=36_500)


class ConsoleSettings(_Settings):
    """The console widget function: the tables it reads (nothing else) and how much of the trail a search reads."""

    audit_table: str = Field(alias="AUDIT_TABLE", min_length=1)
    state_table: str = Field(alias="STATE_TABLE", min_length=1)
    review_table: str = Field(alias="REVIEW_TABLE", min_length=1)
    scan_limit: int = Field(default=20_000, alias="CONSOLE_SCAN_LIMIT", ge=100, le=1_000_000)


class IngestSettings(_Settings):
    queue_url: str = Field(alias="QUEUE_URL", min_length=1)
    webhook_secret_arn: str = Field(alias="WEBHOOK_SECRET_ARN", min_length=1)
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, alias="MAX_BODY_BYTES", gt=0, le=1024 * 1024)
    secret_cache_seconds: int = Field(default=300, alias="SECRET_CACHE_SECONDS", ge=0)


class SyncSettings(_Settings):
    queue_url: str = Field(alias="QUEUE_URL", min_length=1)
    state_table: str = Field(alias="STATE_TABLE", min_length=1)
    review_table: str = Field(alias="REVIEW_TABLE", min_length=1)
    audit_table: str = Field(default="", alias="AUDIT_TABLE")
    ehr_base_url: str = Field(alias="EHR_BASE_URL", pattern=_BASE_URL_PATTERN)
    ehr_auth_secret_arn: str = Field(default="", alias="EHR_AUTH_SECRET_ARN")
    #: Secret `{"key": "<random>"}`: the key of the keyed hash that names people in state and audit.
    pseudonym_secret_arn: str = Field(alias="PSEUDONYM_SECRET_ARN", min_length=1)
    #: Which EHR write dialect to speak: generic FHIR R4, AWS HealthLake, or Oracle Health (see docs/ehr-support.md).
    ehr_profile: EhrProfileName = Field(default="generic", alias="EHR_PROFILE")
    #: `hl7v2` only: allow a plain-TCP `mllp://` EHR_BASE_URL (the path to the engine is a VPN).
    ehr_mllp_plaintext: bool = Field(default=False, alias="EHR_MLLP_PLAINTEXT")
    #: SigV4 region override for HealthLake (default: taken from the HealthLake host name).
    ehr_region: str = Field(default="", alias="EHR_REGION")
    ehr_timeout_seconds: float = Field(default=10.0, alias="EHR_TIMEOUT_SECONDS", gt=0, le=60)
    #: A batch stops taking records when less than one EHR timeout plus this is left (shared/sync/time_budget.py).
    time_margin_seconds: float = Field(default=DEFAULT_MARGIN_SECONDS, alias="SYNC_TIME_MARGIN_SECONDS", ge=0, le=60)
    breaker_failure_threshold: int = Field(default=5, alias="EHR_BREAKER_FAILURES", ge=1, le=1000)
    breaker_cooldown_seconds: float = Field(default=30.0, alias="EHR_BREAKER_COOLDOWN_SECONDS", gt=0, le=3600)
    clinic_config_source: str = Field(alias="CLINIC_CONFIG_SOURCE", pattern=CLINIC_CONFIG_SOURCE_PATTERN)
    #: How often a warm container re-reads the clinic mapping (0: on every batch).
    clinic_config_max_age_seconds: int = Field(default=300, alias="CLINIC_CONFIG_MAX_AGE_SECONDS", ge=0, le=86_400)
    #: Extra EHR endpoints by route name (JSON object, see `EhrRoute`); event types pick one with `ehr:`.
    ehr_routes: dict[str, EhrRoute] = Field(default_factory=dict, alias="EHR_ROUTES")
    identifier_system_base: str = Field(
        default="https://cal-ehr-bridge.dev/fhir/sid", alias="IDENTIFIER_SYSTEM_BASE", pattern=r"^https?://"
    )
    #: How long a worker holds a lineage (docs/sync-semantics.md, "Write protocol"): longer than the
    #: function's timeout, so a live worker never loses it; a crashed worker's lease expires after it.
    lineage_lease_seconds: float = Field(default=120.0, alias="LINEAGE_LEASE_SECONDS", gt=0, le=900)
    #: A retried message comes back after `base * 2**(receive count - 1)` s, at most `cap` (and at least the
    #: EHR's Retry-After); the stack's retry budget is computed from the defaults (infra/constants.py).
    backoff_base_seconds: float = Field(default=BACKOFF_BASE_SECONDS, alias="SYNC_BACKOFF_BASE_SECONDS", ge=0, le=3600)
    backoff_cap_seconds: float = Field(default=BACKOFF_CAP_SECONDS, alias="SYNC_BACKOFF_CAP_SECONDS", ge=0, le=43_200)
    #: How long a parked message keeps its body (with PHI); the review item itself stays, PHI-free.
    review_body_retention_days: int = Field(
        default=REVIEW_BODY_RETENTION_DAYS, alias="REVIEW_BODY_RETENTION_DAYS", ge=1, le=3650
    )

    @field_validator("ehr_routes", mode="before")
    @classmethod
    def _parse_routes(cls, raw: Any) -> Any:
        return _routes_document(raw)

    @model_validator(mode="after")
    def _scheme(self) -> SyncSettings:
        names = ("EHR_BASE_URL", "EHR_PROFILE", "EHR_MLLP_PLAINTEXT")
        _check_scheme(self.ehr_profile, self.ehr_base_url, self.ehr_mllp_plaintext, names)
        return self


def describe_errors(exc: ValidationError) -> str:
    """`LOCATION (type: message)` per problem. Never the input: an environment may hold secrets."""
    return ", ".join(
        f"{'.'.join(str(p) for p in err['loc'])} ({err['type']}: {err['msg']})"
        for err in exc.errors(include_url=False, include_input=False, include_context=False)
    )


class FeedSettings(_Settings):
    """The feed function (`GET /feeds/<token>.ics`): only the availability table."""

    availability_table: str = Field(alias="AVAILABILITY_TABLE", min_length=1)


class AvailabilitySettings(_Settings):
    """The scheduled availability function: EHR-first appointments → busy feeds, and the roster check."""

    availability_table: str = Field(alias="AVAILABILITY_TABLE", min_length=1)
    ehr_base_url: str = Field(alias="EHR_BASE_URL", pattern=_BASE_URL_PATTERN)
    ehr_profile: EhrProfileName = Field(default="generic", alias="EHR_PROFILE")
    ehr_auth_secret_arn: str = Field(default="", alias="EHR_AUTH_SECRET_ARN")
    ehr_region: str = Field(default="", alias="EHR_REGION")
    ehr_routes: dict[str, EhrRoute] = Field(default_factory=dict, alias="EHR_ROUTES")
    ehr_timeout_seconds: float = Field(default=10.0, alias="EHR_TIMEOUT_SECONDS", gt=0, le=60)
    clinic_config_source: str = Field(alias="CLINIC_CONFIG_SOURCE", pattern=CLINIC_CONFIG_SOURCE_PATTERN)
    identifier_system_base: str = Field(
        default="https://cal-ehr-bridge.dev/fhir/sid", alias="IDENTIFIER_SYSTEM_BASE", pattern=r"^https?://"
    )
    #: How far ahead the feeds reach, and how often a full sweep (which finds EHR deletions) runs.
    horizon_days: int = Field(default=90, alias="AVAILABILITY_HORIZON_DAYS", ge=1, le=400)
    full_sweep_minutes: int = Field(default=60, alias="AVAILABILITY_FULL_SWEEP_MINUTES", ge=1, le=7 * 24 * 60)
    #: The roster check (`RosterDrift`): Cal.com API key secret `{"api_key"}`; empty = no roster check.
    calcom_api_secret_arn: str = Field(default="", alias="CALCOM_API_SECRET_ARN")
    calcom_api_base_url: str = Field(default=CALCOM_API_BASE_URL, alias="CALCOM_API_BASE_URL", pattern=r"^https?://")
    #: The Cal.com organization (org users are the hosts) and/or teams (their members are).
    calcom_org_id: int | None = Field(default=None, alias="CALCOM_ORG_ID", ge=1)
    calcom_team_ids: str = Field(default="", alias="CALCOM_TEAM_IDS", pattern=r"^(\d+(,\d+)*)?$")

    @field_validator("ehr_routes", mode="before")
    @classmethod
    def _parse_routes(cls, raw: Any) -> Any:
        return _routes_document(raw)

    @field_validator("calcom_org_id", mode="before")
    @classmethod
    def _blank_org(cls, raw: Any) -> Any:
        return None if raw == "" else raw

    @property
    def team_ids(self) -> tuple[int, ...]:
        return tuple(int(t) for t in self.calcom_team_ids.split(",") if t)


class ReconcileSettings(_Settings):
    """The reconcile function's environment (validated once per container)."""

    queue_url: str = Field(alias="QUEUE_URL", min_length=1)
    state_table: str = Field(alias="STATE_TABLE", min_length=1)
    #: The review table whose open items are counted each run (empty: no backlog gauges).
    review_table: str = Field(default="", alias="REVIEW_TABLE")
    #: Secret `{"api_key": "cal_live_..."}`.
    calcom_api_secret_arn: str = Field(alias="CALCOM_API_SECRET_ARN", min_length=1)
    calcom_api_base_url: str = Field(default=CALCOM_API_BASE_URL, alias="CALCOM_API_BASE_URL", pattern=r"^https?://")
    lookback_hours: float = Field(default=24.0, alias="RECONCILE_LOOKBACK_HOURS", gt=0, le=24 * 90)
    max_rps: float = Field(default=2.0, alias="RECONCILE_MAX_RPS", gt=0, le=50)
    overlap_seconds: int = Field(default=300, alias="RECONCILE_OVERLAP_SECONDS", ge=0, le=24 * 3600)
    page_size: int = Field(default=100, alias="RECONCILE_PAGE_SIZE", ge=1, le=250)
    max_bookings: int = Field(default=5000, alias="RECONCILE_MAX_BOOKINGS", ge=1)
    own_metadata_key: str = Field(default="source", alias="RECONCILE_OWN_METADATA_KEY", min_length=1)
    own_metadata_value: str = Field(default="cal-ehr-bridge", alias="RECONCILE_OWN_METADATA_VALUE", min_length=1)
    api_timeout_seconds: float = Field(default=10.0, alias="CALCOM_API_TIMEOUT_SECONDS", gt=0, le=60)
    secret_cache_seconds: int = Field(default=300, alias="SECRET_CACHE_SECONDS", ge=0)
    #: A Cal.com organization: every host's bookings are listed (org admin key), each host with its own
    #: cursor. Empty: the key's own user's bookings only (`GET /v2/bookings`).
    calcom_org_id: int | None = Field(default=None, alias="CALCOM_ORG_ID", ge=1)

    @field_validator("calcom_org_id", mode="before")
    @classmethod
    def _blank_org(cls, raw: Any) -> Any:
        return None if raw == "" else raw
