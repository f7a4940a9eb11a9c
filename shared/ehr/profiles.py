"""Vendor profiles selected by configuration, and the auth each one uses.

    auth = auth_from_secret(secret_document, base_url)          # or sigv4_auth(base_url)
    ehr = build_ehr_client("healthlake", base_url, auth=auth, timeout_seconds=10)

| profile      | create                         | update                    | dedupe on                       |
|--------------|--------------------------------|---------------------------|---------------------------------|
| `generic`    | POST + `If-None-Exist`         | PUT + `If-Match`          | the server's conditional create |
| `healthlake` | PUT `<Type>/<uuid5>`           | PUT + `If-Match`          | the deterministic id            |
| `oracle`     | POST as proposed/booked        | JSON Patch + `If-Match`   | the bridge's id map             |
| `hl7v2`      | SIU S12 over MLLP              | S13/S14/S15/S17/S26       | deterministic MSH-10 control ids |

`generic` and `healthlake` send a sync attempt's reads as one FHIR `batch` (`read_batch`); `oracle` reads
one call at a time. `hl7v2` is not a FHIR client: it is built by `shared.ehr.hl7v2.endpoint.siu_writer`.

Every profile implements `shared.ehr.port.EhrClient` and keeps the generic adapter's error classes.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import Any

import httpx

from shared.contracts.deployment import EHR_PROFILES, FHIR_PROFILES
from shared.ehr.auth.sigv4 import SigV4Auth, SigV4ConfigError, region_from_url
from shared.ehr.fhir.client import FhirR4Client
from shared.ehr.fhir.healthlake import HealthLakeClient
from shared.ehr.fhir.oracle import DEFAULT_PATCHABLE, IdMapStore, OracleHealthClient
from shared.ehr.port import EhrClient

#: Every profile (`hl7v2` sends SIU messages over MLLP instead of FHIR: `shared.ehr.hl7v2`).
PROFILES: tuple[str, ...] = EHR_PROFILES


class ProfileError(ValueError):
    """Unknown profile or an incomplete profile configuration (a deployment error)."""


class StaticBearerAuth(httpx.Auth):
    """A fixed bearer token (test servers, gateways that issue long-lived tokens)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __repr__(self) -> str:
        return "StaticBearerAuth(***)"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


def sigv4_auth(base_url: str, region: str | None = None) -> SigV4Auth:
    """SigV4 for a HealthLake data store; the region defaults to the one in its endpoint host."""
    chosen = region or region_from_url(base_url)
    if not chosen:
        raise ProfileError("SigV4 needs a region: none given and none in the HealthLake endpoint host")
    return SigV4Auth(chosen)


def auth_from_secret(
    document: Mapping[str, Any] | None,
    base_url: str,
    *,
    timeout_seconds: float = 10.0,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Auth | None:
    """The EHR auth secret → an `httpx.Auth`.

    `None` or `{"type": "none"}`: no auth. `{"type": "bearer", "token"}`: static bearer.
    `{"type": "smart", ...}`: SMART Backend Services (see `shared.ehr.auth.smart`).
    `{"type": "sigv4", "region"?}`: AWS SigV4 with the function's own credentials (no secret needed).
    """
    kind = (document or {}).get("type", "none")
    try:
        if kind == "none":
            return None
        assert document is not None
        if kind == "bearer":
            token = document.get("token")
            if not isinstance(token, str) or not token:
                raise ProfileError("bearer secret: token missing or empty")
            return StaticBearerAuth(token)
        if kind == "smart":
            # Imported only when used: it pulls in `cryptography` (~15 ms at cold start), which ships in
            # the SMART layer, attached only when the stack is deployed with `-c ehrSmartAuth=true`.
            try:
                from shared.ehr.auth.smart import SmartConfigError, smart_auth_from_secret  # noqa: PLC0415
            except ImportError:
                raise ProfileError("smart auth needs the SMART layer: deploy with -c ehrSmartAuth=true") from None

            try:
                return smart_auth_from_secret(document, base_url, timeout_seconds=timeout_seconds, transport=transport)
            except SmartConfigError as exc:
                raise ProfileError(f"{kind} auth: {exc}") from None
        if kind == "sigv4":
            region = document.get("region")
            return sigv4_auth(base_url, region if isinstance(region, str) else None)
    except SigV4ConfigError as exc:
        raise ProfileError(f"{kind} auth: {exc}") from None
    raise ProfileError("auth secret type must be none, bearer, smart or sigv4")


def profile_auth(
    document: Mapping[str, Any] | None,
    base_url: str,
    profile: str,
    *,
    region: str = "",
    timeout_seconds: float = 10.0,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Auth | None:
    """`auth_from_secret` with the profile's default: an endpoint of the `healthlake` profile without
    an auth secret signs with SigV4 (the function's own credentials; `region` overrides the host's).
    Every EHR endpoint (the default one and each route) gets its auth through here."""
    if document is None and profile == "healthlake":
        document = {"type": "sigv4", **({"region": region} if region else {})}
    return auth_from_secret(document, base_url, timeout_seconds=timeout_seconds, transport=transport)


def build_ehr_client(
    profile: str,
    base_url: str,
    *,
    auth: httpx.Auth | None = None,
    timeout_seconds: float = 10.0,
    transport: httpx.BaseTransport | None = None,
    id_map: IdMapStore | None = None,
    patchable: frozenset[str] = DEFAULT_PATCHABLE,
) -> EhrClient:
    """The `EhrClient` for a profile. `oracle` needs `id_map` (`DynamoIdMap(state_table)` in AWS)."""
    if profile not in FHIR_PROFILES:
        raise ProfileError(f"a FHIR EHR profile must be one of {', '.join(FHIR_PROFILES)}")
    fhir = FhirR4Client(base_url, auth=auth, timeout_seconds=timeout_seconds, transport=transport)
    if profile == "healthlake":
        return HealthLakeClient(fhir)
    if profile == "oracle":
        if id_map is None:
            raise ProfileError("the oracle profile needs an id map store")
        return OracleHealthClient(fhir, id_map, patchable=patchable)
    return fhir
