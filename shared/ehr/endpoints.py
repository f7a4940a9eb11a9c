"""The EHR endpoints a sync container writes to, assembled from its settings once per cold start.

The default endpoint (`EHR_BASE_URL`, `EHR_PROFILE`) and every `EHR_ROUTES` entry of a FHIR profile become
a FHIR client (`shared.ehr.profiles`), each behind its own circuit breaker, so one EHR's outage never opens
another's circuit. (`hl7v2` endpoints are MLLP clients: `shared.ehr.hl7v2.endpoint`.)
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

from shared.contracts.deployment import DEFAULT_ROUTE
from shared.ehr.breaker import BreakerEhrClient, CircuitBreakers
from shared.ehr.fhir.oracle import IdMapStore
from shared.ehr.profiles import build_ehr_client, profile_auth
from shared.settings import SyncSettings


class SecretSource(Protocol):
    def json(self, secret_id: str) -> dict[str, Any]: ...


#: The Oracle profile's identifier map for a route (`shared.stores.id_map.DynamoIdMap` in AWS).
IdMapFactory = Callable[[str], IdMapStore]


def _fhir_endpoint(
    route: str,
    base_url: str,
    profile: str,
    auth_secret_arn: str,
    region: str,
    *,
    settings: SyncSettings,
    secrets: SecretSource,
    breakers: CircuitBreakers,
    id_maps: IdMapFactory,
) -> BreakerEhrClient:
    document = secrets.json(auth_secret_arn) if auth_secret_arn else None
    timeout = settings.ehr_timeout_seconds
    auth = profile_auth(document, base_url, profile, region=region, timeout_seconds=timeout)
    id_map = id_maps(route) if profile == "oracle" else None  # each route its own map: ids never collide
    client = build_ehr_client(profile, base_url, auth=auth, timeout_seconds=timeout, id_map=id_map)
    return BreakerEhrClient(client, breakers.of(route, default_route=DEFAULT_ROUTE))


def build_ehr_clients(
    settings: SyncSettings, secrets: SecretSource, breakers: CircuitBreakers, id_maps: IdMapFactory
) -> tuple[BreakerEhrClient | None, dict[str, BreakerEhrClient]]:
    """The default FHIR endpoint (None when it is `hl7v2`) and one client per FHIR `EHR_ROUTES` entry."""
    endpoint = partial(_fhir_endpoint, settings=settings, secrets=secrets, breakers=breakers, id_maps=id_maps)
    default = None
    if settings.ehr_profile != "hl7v2":
        default = endpoint(
            DEFAULT_ROUTE,
            settings.ehr_base_url,
            settings.ehr_profile,
            settings.ehr_auth_secret_arn,
            settings.ehr_region,
        )
    routes = {
        name: endpoint(name, route.base_url, route.profile, route.auth_secret_arn, route.region)
        for name, route in settings.ehr_routes.items()
        if route.profile != "hl7v2"
    }
    return default, routes
