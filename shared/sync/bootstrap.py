"""The sync's composition root: the one place its objects are built.

* `sync_service(...)`: a `SyncService` wired over the ports it is given (EHR clients, SIU writers, the state
  store, the audit trail): its routing, read planner, slot guard, FHIR writer, joins, audit and drift check.
  Tests, the CLI (`calehr verify`, `calehr hl7 render`) and the container below all build it here.
* `SyncApp`: what one sync container holds for its lifetime (settings, circuit breakers, EHR endpoints,
  stores, keys, the clinic mapping's source) and hands out the `SyncService` for the mapping as of now (the
  same instance while the mapping is unchanged, so its practitioner cache stays warm) and the queue worker.
* `bootstrap(settings)`: a `SyncApp` over the real adapters, as the Lambda handler builds it once
  (`functions/sync/handler.py`, through `shared.composition.Root`, which SnapStart resets after a restore).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol

from shared.clinic.mapping import ClinicConfig
from shared.clinic.source import ClinicConfigSource
from shared.contracts.deployment import DEFAULT_ROUTE
from shared.domain.identifiers import IdentifierSystems
from shared.ehr.breaker import CircuitBreakers
from shared.ehr.endpoints import SecretSource, build_ehr_clients
from shared.ehr.port import EhrClient
from shared.ehr.read_ahead import ReadAhead
from shared.settings import SyncSettings
from shared.stores.audit import AuditTrail
from shared.stores.id_map import DynamoIdMap
from shared.stores.lineages import LineageStateStore
from shared.stores.queue import EventQueue
from shared.stores.review import ReviewStore
from shared.stores.secrets import SecretReader
from shared.sync.audit import AuditPort, SyncAudit
from shared.sync.drift import DriftCheck
from shared.sync.fhir_writer import FhirWriter
from shared.sync.joins import LineageJoins
from shared.sync.parking import Parking, ReviewPort
from shared.sync.ports import LineageStore
from shared.sync.read_plan import AttemptPlanner
from shared.sync.routing import Routing
from shared.sync.service import SyncService, SyncSteps
from shared.sync.siu_writer import SiuWriter, siu_writer
from shared.sync.slot_check import SlotGuard
from shared.sync.worker import SyncWorker, VisibilityPort


def sync_service(
    *,
    store: LineageStore,
    ehr: EhrClient | None,
    ehr_routes: Mapping[str, EhrClient] | None = None,
    siu_routes: Mapping[str, SiuWriter] | None = None,
    config: ClinicConfig,
    systems: IdentifierSystems,
    pseudonym_key: bytes,
    audit: AuditPort | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> SyncService:
    """A `SyncService` over these ports (`ehr` is the `default` route; None when that route is HL7 v2)."""
    routes: dict[str, EhrClient] = {**(ehr_routes or {}), **({DEFAULT_ROUTE: ehr} if ehr is not None else {})}
    reads = {name: ReadAhead(client) for name, client in routes.items()}  # one batch per attempt
    siu = dict(siu_routes or {})
    siu_names = frozenset(siu)
    routing = Routing(config=config, systems=systems, pseudonym_key=pseudonym_key, ehrs=reads, siu_routes=siu_names)
    writer = FhirWriter(ehrs=reads, systems=systems, fences=store)
    sync_audit = SyncAudit(audit, revision=config.revision, pseudonym_key=pseudonym_key, clock=clock)
    steps = SyncSteps(
        store=store,
        reads=reads,
        siu=siu,
        config=config,
        systems=systems,
        pseudonym_key=pseudonym_key,
        routing=routing,
        planner=AttemptPlanner(
            config=config, systems=systems, pseudonym_key=pseudonym_key, routing=routing, siu_routes=siu_names
        ),
        slot_guard=SlotGuard(systems),
        writer=writer,
        joins=LineageJoins(store, pseudonym_key, forms=bool(config.routing_forms)),
        audit=sync_audit,
        drift=DriftCheck(store=store, writer=writer, routing=routing, siu_routes=siu_names, audit=sync_audit),
        clock=clock,
    )
    return SyncService(steps)


class ConfigSource(Protocol):
    """The clinic mapping as of now (`shared.clinic.source.ClinicConfigSource`)."""

    def get(self) -> ClinicConfig: ...


@dataclass
class SyncApp:
    """What one sync container builds once, and the service and worker over it."""

    settings: SyncSettings
    #: One circuit breaker per EHR route, for the container's lifetime (`shared.ehr.breaker`).
    breakers: CircuitBreakers
    store: LineageStore
    ehr: EhrClient | None
    ehr_routes: dict[str, EhrClient]
    siu_writers: dict[str, SiuWriter]
    systems: IdentifierSystems
    pseudonym_key: bytes
    audit: AuditPort | None
    review: ReviewPort
    queue: VisibilityPort
    config: ConfigSource
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _service: SyncService | None = field(default=None, init=False, repr=False)
    _service_config: ClinicConfig | None = field(default=None, init=False, repr=False)

    def service(self) -> SyncService:
        """The service for the clinic mapping as of now: rebuilt (cheaply, over the same ports) only when the
        source has loaded a changed mapping."""
        config = self.config.get()
        with self._lock:
            if self._service is None or self._service_config is not config:
                self._service = sync_service(
                    store=self.store,
                    ehr=self.ehr,
                    ehr_routes=self.ehr_routes,
                    siu_routes=self.siu_writers,
                    config=config,
                    systems=self.systems,
                    pseudonym_key=self.pseudonym_key,
                    audit=self.audit,
                )
                self._service_config = config
            return self._service

    def worker(self) -> SyncWorker:
        """The queue worker (one per container: it holds nothing of its own)."""
        return SyncWorker(
            services=self.service,
            parking=lambda service: Parking(self.review, service.audit),
            visibility=self.queue,
            settings=self.settings,
        )

    def wrap_ports(self, wrap: Callable[[str, Any], Any]) -> None:
        """Put `wrap(name, port)` around every port the service uses (dev tooling: the chaos poller's kill
        switch); the next message gets a service built over the wrapped ports."""
        with self._lock:
            self.store = wrap("store", self.store)
            self.ehr = wrap("ehr", self.ehr) if self.ehr is not None else None
            self.ehr_routes = {name: wrap(f"ehr:{name}", client) for name, client in self.ehr_routes.items()}
            self.siu_writers = {name: wrap(f"siu:{name}", writer) for name, writer in self.siu_writers.items()}
            self.audit = wrap("audit", self.audit) if self.audit is not None else None
            self._service = None


def review_store(settings: SyncSettings, client: Any = None) -> ReviewStore:
    """The review store the sync parks into, keeping bodies for the configured days."""
    return ReviewStore(settings.review_table, client, body_retention_days=settings.review_body_retention_days)


def siu_writers(settings: SyncSettings, secrets: SecretSource, breakers: CircuitBreakers) -> dict[str, SiuWriter]:
    """One SIU writer (MLLP client, TLS material from the endpoint's secret) per `hl7v2` endpoint."""
    endpoints = [(DEFAULT_ROUTE, settings.ehr_base_url, settings.ehr_auth_secret_arn, settings.ehr_mllp_plaintext)]
    if settings.ehr_profile != "hl7v2":
        endpoints = []
    endpoints += [
        (name, route.base_url, route.auth_secret_arn, route.mllp_plaintext)
        for name, route in settings.ehr_routes.items()
        if route.profile == "hl7v2"
    ]
    return {
        name: siu_writer(
            base_url,
            secrets.json(secret_arn) if secret_arn else None,
            plaintext_allowed=plaintext,
            timeout_seconds=settings.ehr_timeout_seconds,
            breaker=breakers.of(name, default_route=DEFAULT_ROUTE),
        )
        for name, base_url, secret_arn, plaintext in endpoints
    }


def bootstrap(settings: SyncSettings, *, secrets: SecretSource | None = None) -> SyncApp:
    """A sync container over the real adapters. Fails the cold start on an invalid clinic mapping."""
    secrets = secrets or SecretReader()
    # Live as long as the container: an EHR outage opens its breaker for every message this container handles.
    breakers = CircuitBreakers(
        failure_threshold=settings.breaker_failure_threshold, cooldown_seconds=settings.breaker_cooldown_seconds
    )
    id_maps = partial(DynamoIdMap.for_route, settings.state_table)  # Oracle routes: one map per route
    ehr, ehr_routes = build_ehr_clients(settings, secrets, breakers, id_maps)
    writers = siu_writers(settings, secrets, breakers)
    store = LineageStateStore(settings.state_table, lease_seconds=settings.lineage_lease_seconds)
    pseudonym_key = str(secrets.json(settings.pseudonym_secret_arn)["key"]).encode("utf-8")
    config = ClinicConfigSource.from_uri(
        settings.clinic_config_source, max_age_seconds=settings.clinic_config_max_age_seconds
    )
    config.get()  # fail the cold start on an invalid mapping
    return SyncApp(
        settings=settings,
        breakers=breakers,
        store=store,
        ehr=ehr,
        ehr_routes=dict(ehr_routes),
        siu_writers=writers,
        systems=IdentifierSystems(settings.identifier_system_base),
        pseudonym_key=pseudonym_key,
        audit=AuditTrail(settings.audit_table) if settings.audit_table else None,
        review=review_store(settings),
        queue=EventQueue(settings.queue_url),
        config=config,
    )
