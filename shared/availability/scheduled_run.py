"""One scheduled availability run (the Lambda and `calehr availability sync` share it) over readers per FHIR
route, the feed store and the clinic mapping (`shared.availability.bootstrap` builds them): the busy feeds,
then the roster check.

Metrics (names only, counts): `AvailabilityFeedsSynced`, `AvailabilityBusyIntervals`,
`AvailabilityFailed` (a feed that could not be brought up to date), `RosterDrift` (findings of the
roster check; 0 when in agreement) and `RosterCheckFailed` (Cal.com or the EHR could not be asked).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared.availability.roster import RosterReport, compare, practitioner_facts
from shared.availability.sync_feeds import AvailabilityOptions, AvailabilityReport, AvailabilitySync, FeedSubject
from shared.calcom.api import CalcomApiClient
from shared.calcom.hosts import calcom_hosts
from shared.clinic.mapping import ClinicConfig
from shared.contracts import metrics as m
from shared.domain.identifiers import IdentifierSystems
from shared.ehr.fhir.client import FhirR4Client
from shared.settings import AvailabilitySettings
from shared.stores.feeds import FeedStore

Emit = Callable[[m.Metric, int], None]


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


def report_metrics(feeds: AvailabilityReport | None, roster: RosterReport | None, metric: Emit) -> None:
    """The run's counts, each only when it is not zero: a zero costs a billed metric-hour and tells the
    alarms (missing data: not breaching) and the dashboard nothing more than no datum does."""
    values: list[tuple[m.Metric, int]] = []
    if feeds is not None:
        values += [
            (m.AVAILABILITY_FEEDS_SYNCED, len({f.feed_id for f in feeds.feeds if not f.problem})),
            (m.AVAILABILITY_BUSY_INTERVALS, sum(f.busy for f in feeds.feeds)),
            (m.AVAILABILITY_FAILED, feeds.failed),
        ]
    if roster is not None:
        values.append((m.ROSTER_DRIFT, len(roster.findings)))
    for name, value in values:
        if value:
            metric(name, value)
