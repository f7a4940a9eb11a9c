"""What a sync container builds once: EHR endpoints, stores, keys, the clinic mapping source.

`SyncRuntime.service()` hands out a `SyncService` over these with the clinic mapping as of now: the same
instance while the mapping is unchanged (its practitioner cache stays warm), a new one, built cheaply
from the same objects, once the source has loaded a changed mapping.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from typing import Any

from shared.clinic.mapping import ClinicConfig
from shared.clinic.source import ClinicConfigSource
from shared.domain.identifiers import IdentifierSystems
from shared.ehr.breaker import CircuitBreakers
from shared.ehr.endpoints import build_ehr_clients, build_siu_writers
from shared.settings import SyncSettings
from shared.stores.audit import AuditTrail
from shared.stores.id_map import DynamoIdMap
from shared.stores.lineages import LineageStateStore
from shared.stores.queue import EventQueue
from shared.stores.review import ReviewStore
from shared.stores.secrets import SecretReader
from shared.sync.service import SyncService


class SyncRuntime:
    def __init__(self, settings: SyncSettings, breakers: CircuitBreakers) -> None:
        secrets = SecretReader()
        id_maps = partial(DynamoIdMap.for_route, settings.state_table)  # Oracle routes: one map per route
        self.ehr, self.ehr_routes = build_ehr_clients(settings, secrets, breakers, id_maps)
        self.siu_writers = build_siu_writers(settings, secrets, breakers)
        self.store = LineageStateStore(settings.state_table, lease_seconds=settings.lineage_lease_seconds)
        self.systems = IdentifierSystems(settings.identifier_system_base)
        self.pseudonym_key = str(secrets.json(settings.pseudonym_secret_arn)["key"]).encode("utf-8")
        self.audit = AuditTrail(settings.audit_table) if settings.audit_table else None
        self.review = ReviewStore(settings.review_table)
        self.queue = EventQueue(settings.queue_url)
        self.config = ClinicConfigSource.from_uri(
            settings.clinic_config_source, max_age_seconds=settings.clinic_config_max_age_seconds
        )
        self.config.get()  # fail the cold start on an invalid mapping
        self._lock = threading.Lock()
        self._service: SyncService | None = None
        self._service_config: ClinicConfig | None = None

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

    def service(self) -> SyncService:
        config = self.config.get()
        with self._lock:
            if self._service is None or self._service_config is not config:
                self._service = SyncService(
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
