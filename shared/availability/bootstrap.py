"""The availability functions' composition roots: the scheduled run's readers, store, clinic mapping and
Cal.com key (`AvailabilityApp`), and the feed function's store (`FeedApp`), each built once per container."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from shared.calcom.api import CalcomApiClient
from shared.clinic.mapping import ClinicConfig
from shared.clinic.source import ClinicConfigSource
from shared.contracts.deployment import DEFAULT_ROUTE, FHIR_PROFILES
from shared.ehr.fhir.client import FhirR4Client
from shared.ehr.profiles import profile_auth
from shared.settings import AvailabilitySettings, FeedSettings
from shared.stores.feeds import FeedStore
from shared.stores.secrets import SecretReader, SecretUnavailableError


def fhir_readers(settings: AvailabilitySettings, secret: Callable[[str], Mapping[str, Any]]) -> dict[str, FhirR4Client]:
    """A plain FHIR reader per FHIR route (every profile reads and searches the standard way)."""
    endpoints = [
        (DEFAULT_ROUTE, settings.ehr_base_url, settings.ehr_profile, settings.ehr_auth_secret_arn, settings.ehr_region)
    ]
    endpoints += [(name, r.base_url, r.profile, r.auth_secret_arn, r.region) for name, r in settings.ehr_routes.items()]
    readers = {}
    for name, base_url, profile, secret_arn, region in endpoints:
        if profile not in FHIR_PROFILES:
            continue  # HL7 v2 routes cannot be read back
        document = dict(secret(secret_arn)) if secret_arn else None
        auth = profile_auth(document, base_url, profile, region=region, timeout_seconds=settings.ehr_timeout_seconds)
        readers[name] = FhirR4Client(base_url, auth=auth, timeout_seconds=settings.ehr_timeout_seconds)
    return readers


@dataclass(frozen=True, slots=True)
class AvailabilityApp:
    settings: AvailabilitySettings
    readers: Mapping[str, FhirR4Client]
    store: FeedStore
    config_source: ClinicConfigSource
    secrets: SecretReader

    def config(self) -> ClinicConfig:
        """The clinic mapping as of now (re-read through its source)."""
        return self.config_source.get()

    def calcom(self) -> CalcomApiClient | None:
        """A Cal.com API client for the roster check (closed by the caller); None without a key configured."""
        settings = self.settings
        if not settings.calcom_api_secret_arn:
            return None
        key = self.secrets.json(settings.calcom_api_secret_arn).get("api_key")
        if not isinstance(key, str) or not key:
            raise SecretUnavailableError("secret has no 'api_key' string")
        return CalcomApiClient(key, base_url=settings.calcom_api_base_url, timeout=httpx.Timeout(10.0, connect=5.0))


def bootstrap(settings: AvailabilitySettings) -> AvailabilityApp:
    secrets = SecretReader()
    return AvailabilityApp(
        settings=settings,
        readers=fhir_readers(settings, secrets.json),
        store=FeedStore(settings.availability_table),
        config_source=ClinicConfigSource.from_uri(settings.clinic_config_source),
        secrets=secrets,
    )


@dataclass(frozen=True, slots=True)
class FeedApp:
    settings: FeedSettings
    store: FeedStore


def bootstrap_feed(settings: FeedSettings) -> FeedApp:
    return FeedApp(settings=settings, store=FeedStore(settings.availability_table))
