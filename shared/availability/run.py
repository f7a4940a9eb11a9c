"""Wiring of one scheduled availability run (the Lambda and `calehr availability sync --local` share it):
readers per FHIR route, the feed store, the clinic mapping; then the busy feeds and the roster check.

Metrics (names only, counts): `AvailabilityFeedsSynced`, `AvailabilityBusyIntervals`,
`AvailabilityFailed` (a feed that could not be brought up to date), `RosterDrift` (findings of the
roster check; 0 when in agreement) and `RosterCheckFailed` (Cal.com or the EHR could not be asked).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.availability.roster import RosterReport, calcom_hosts, compare, practitioner_facts
from shared.availability.service import AvailabilityOptions, AvailabilityReport, AvailabilitySync, FeedSubject
from shared.calcom.api import CalcomApiClient
from shared.config.clinic import ClinicConfig
from shared.domain.identifiers import IdentifierSystems
from shared.ehr.fhir import FhirR4Client
from shared.ehr.profiles import FHIR_PROFILES, profile_auth
from shared.settings import DEFAULT_ROUTE, AvailabilitySettings
from shared.stores.availability import FeedStore

Metric = Callable[[str, int], None]


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
class AvailabilityRun:
    readers: Mapping[str, FhirR4Client]
    store: FeedStore
    config: ClinicConfig
    systems: IdentifierSystems
    options: AvailabilityOptions

    @classmethod
    def of(
        cls,
        settings: AvailabilitySettings,
        *,
        readers: Mapping[str, FhirR4Client],
        store: FeedStore,
        config: ClinicConfig,
    ) -> AvailabilityRun:
        options = AvailabilityOptions(
            horizon=timedelta(days=settings.horizon_days), full_sweep=timedelta(minutes=settings.full_sweep_minutes)
        )
        return cls(readers, store, config, IdentifierSystems(settings.identifier_system_base), options)

    def feeds(
        self, *, full: bool = False, only: FeedSubject | None = None, now: Callable[[], datetime] | None = None
    ) -> AvailabilityReport:
        service = AvailabilitySync(
            readers=self.readers,
            store=self.store,
            config=self.config,
            systems=self.systems,
            options=self.options,
            clock=now or (lambda: datetime.now(UTC)),
        )
        return service.run(full=full, only=only)

    def roster(self, api: CalcomApiClient | None, *, org_id: int | None, team_ids: tuple[int, ...]) -> RosterReport:
        """The roster check; without an API client only the mapping and the EHR are compared."""
        hosts = calcom_hosts(api, org_id=org_id, team_ids=team_ids) if api is not None else None
        routes = sorted({e.ehr for e in self.config.event_types} & set(self.readers)) or sorted(self.readers)[:1]
        facts = {
            index: [practitioner_facts(self.readers[route], route, mapping) for route in routes]
            for index, mapping in enumerate(self.config.practitioners)
        }
        return compare(self.config, hosts, facts)


def report_metrics(feeds: AvailabilityReport | None, roster: RosterReport | None, metric: Metric) -> None:
    """The run's counts, each only when it is not zero: a zero costs a billed metric-hour and tells the
    alarms (missing data: not breaching) and the dashboard nothing more than no datum does."""
    values: list[tuple[str, int]] = []
    if feeds is not None:
        values += [
            ("AvailabilityFeedsSynced", len({f.feed_id for f in feeds.feeds if not f.problem})),
            ("AvailabilityBusyIntervals", sum(f.busy for f in feeds.feeds)),
            ("AvailabilityFailed", feeds.failed),
        ]
    if roster is not None:
        values.append(("RosterDrift", len(roster.findings)))
    for name, value in values:
        if value:
            metric(name, value)
