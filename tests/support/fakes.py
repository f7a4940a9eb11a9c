"""In-memory fakes of the sync's ports, and `Bridge`: a sync service over them, for unit tests of the sync
itself (no sockets, no AWS, no EHR).

Each keeps the semantics the sync relies on, and no more:

* `MemoryLineageStore` (`shared.sync.ports.LineageStore`): a lease per lineage with a growing fence, a
  commit that succeeds only while the lease is held and the version is the one leased (then the audit
  puts of the same transaction land too), first-claim-wins uid aliases, no-show marks and person items;
* `MemoryEhr` (`shared.ehr.port.EhrClient`): resources by type and id with versions; `identifier`,
  `email`, `practitioner`, `location` and `date` (`ge`/`lt` on `start`) searches; conditional create by
  identifier; `If-Match` updates (a stale version is the retryable 412 the FHIR client raises); reads as one
  batch call (`batches_reads`), answered one by one;
* `MemoryAudit`, `MemoryReview`, `MemoryQueue`: what was appended, parked, or sent back with which delay.

Integration tests run the same code against the real adapters over sockets (moto, the FHIR engine).
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from devstack.stack import DEMO_CONFIG, DEMO_DIR
from shared.clinic.source import load_config
from shared.domain.identifiers import IdentifierSystems
from shared.domain.lineage_state import LineageState
from shared.ehr.port import BatchAnswer, Identifier, ReadRequest, Resource, SearchParams, StoredResource, read_each
from shared.errors import RetryableEhrError
from shared.stores.audit import AuditRecord
from shared.stores.lineages import Lease, LineageBusyError, StateConflictError, TransactPut, UidClaim
from shared.stores.review import ReviewItem
from shared.sync.bootstrap import sync_service
from shared.sync.outcome import SyncResult
from shared.sync.service import SyncService
from tests.support.fixtures import compact

AUDIT_TABLE = "memory-audit"


@dataclass
class _Lineage:
    state: LineageState
    fence: int = 0
    owner: str | None = None


class MemoryLineageStore:
    """Lineage state, uid aliases and person items in memory; leases never expire (no clock)."""

    def __init__(self, audit: MemoryAudit | None = None) -> None:
        self.lineages: dict[str, _Lineage] = {}
        self.uids: dict[str, dict[str, Any]] = {}
        self.people: dict[str, dict[str, Any]] = {}
        self.forms: dict[str, set[str]] = {}
        self.commits = 0
        self._audit = audit

    def _lineage(self, lineage: str) -> _Lineage:
        return self.lineages.setdefault(lineage, _Lineage(LineageState(lineage=lineage)))

    def load(self, lineage: str) -> LineageState:
        return self._lineage(lineage).state

    # -- the lease and the commit
    def acquire(self, lineage: str) -> tuple[LineageState, Lease]:
        item = self._lineage(lineage)
        if item.owner is not None:
            raise LineageBusyError("lineage leased by another worker", 1.0)
        item.fence += 1
        item.owner = uuid.uuid4().hex
        return item.state, Lease(lineage=lineage, owner=item.owner, fence=item.fence, until_ms=2**62)

    def holds(self, lease: Lease) -> bool:
        return self._lineage(lease.lineage).owner == lease.owner

    def raise_fence(self, lease: Lease, at_least: int) -> Lease:
        if not self.holds(lease):
            raise StateConflictError("lease lost")
        self._lineage(lease.lineage).fence = at_least
        return Lease(lease.lineage, lease.owner, at_least, lease.until_ms)

    def release(self, lease: Lease) -> None:
        item = self._lineage(lease.lineage)
        if item.owner == lease.owner:
            item.owner = None

    def commit(self, state: LineageState, lease: Lease, *, also: Sequence[TransactPut] = ()) -> LineageState:
        item = self._lineage(state.lineage)
        if item.owner != lease.owner or item.state.version != state.version:
            raise StateConflictError("lease lost before the commit")
        stored = state.model_copy(update={"version": state.version + 1})
        item.state, item.owner = stored, None
        self.commits += 1
        for put in also:
            assert self._audit is not None and put.table == AUDIT_TABLE, put.table
            self._audit.records.append(put.item)
        return stored

    # -- uids and what waits under them
    def lineage_of(self, uid: str) -> str | None:
        lineage = self.uids.get(uid, {}).get("lineage")
        return str(lineage) if lineage else None

    def claim_uid(self, uid: str, lineage: str) -> UidClaim:
        item = self.uids.setdefault(uid, {"marks": set()})
        item.setdefault("lineage", lineage)
        return UidClaim(lineage=item["lineage"], marks=sorted(item["marks"]))

    def add_pending_marks(self, uid: str, marks_json: list[str]) -> str | None:
        item = self.uids.setdefault(uid, {"marks": set()})
        item["marks"].update(marks_json)
        return item.get("lineage")

    # -- routing-form intake
    def link_person(self, person: str, lineage: str) -> bool:
        item = self.people.setdefault(person, {"lineages": set(), "has_forms": False})
        item["lineages"].add(lineage)
        return bool(item["has_forms"])

    def announce_forms(self, person: str) -> list[str]:
        item = self.people.setdefault(person, {"lineages": set(), "has_forms": False})
        item["has_forms"] = True
        return sorted(item["lineages"])

    def add_form(self, person: str, fact_json: str) -> None:
        self.forms.setdefault(person, set()).add(fact_json)

    def forms_of(self, person: str) -> list[str]:
        return sorted(self.forms.get(person, set()))


@dataclass
class MemoryAudit:
    """The audit trail: records appended on their own or with a lineage's commit (as DynamoDB items)."""

    records: list[dict[str, Any]] = field(default_factory=list)

    def record(self, entry: AuditRecord) -> bool:
        if any(r["pk"] == entry.item()["pk"] and r["sk"] == entry.item()["sk"] for r in self.records):
            return False
        self.records.append(entry.item())
        return True

    def put_request(self, entry: AuditRecord) -> TransactPut:
        return TransactPut(table=AUDIT_TABLE, item=entry.item())

    def outcomes(self) -> list[tuple[str, str, str]]:
        """(trigger, outcome, reason) of every record, in the order they were written."""
        return [(r["trigger"]["S"], r["outcome"]["S"], r.get("reason", {}).get("S", "")) for r in self.records]


@dataclass
class MemoryReview:
    items: list[ReviewItem] = field(default_factory=list)

    def park(self, item: ReviewItem) -> str:
        self.items.append(item)
        return item.review_id


@dataclass
class MemoryQueue:
    """The queue's visibility port: which message comes back after how many seconds."""

    delays: dict[str, int] = field(default_factory=dict)

    def come_back_in(self, receipt_handle: str, seconds: int) -> None:
        self.delays[receipt_handle] = seconds


def _values(params: SearchParams) -> list[tuple[str, str]]:
    return list(params.items()) if isinstance(params, dict) else [(str(k), str(v)) for k, v in params]


def _tokens(resource: Resource) -> set[str]:
    return {f"{i.get('system')}|{i.get('value')}" for i in resource.get("identifier", []) if isinstance(i, dict)}


def _matches(resource: Resource, name: str, value: str) -> bool:
    if name == "identifier":
        return value in _tokens(resource)
    if name == "email":
        return any(t.get("system") == "email" and t.get("value") == value for t in resource.get("telecom", []))
    if name in ("practitioner", "location", "patient", "actor"):
        return any((p.get("actor") or {}).get("reference") == value for p in resource.get("participant", []))
    if name == "date":
        start = str(resource.get("start", ""))
        return start >= value[2:] if value.startswith("ge") else start < value[2:]
    return name.startswith("_")  # _count, _lastUpdated…: not filters here


class MemoryEhr:
    """An EHR in memory that speaks the port the sync uses (with read batches, like the generic profile)."""

    batches_reads = True

    def __init__(self, *resources: Resource) -> None:
        self.store: dict[tuple[str, str], StoredResource] = {}
        self.calls: list[str] = []
        self.failures: list[Exception] = []  # raised by the next calls, one each
        self._ids = itertools.count(1)
        for resource in resources:
            self.put(resource)

    def put(self, resource: Resource) -> StoredResource:
        """Store a resource as someone else's (the EHR's own), version 1 or the next."""
        resource = json.loads(json.dumps(resource))
        rid = str(resource.get("id") or next(self._ids))
        resource["id"] = rid
        key = (str(resource["resourceType"]), rid)
        version = str(int(self.store[key].version or "0") + 1) if key in self.store else "1"
        resource["meta"] = {**resource.get("meta", {}), "versionId": version}
        stored = StoredResource(rid, version, resource)
        self.store[key] = stored
        return stored

    def of_type(self, resource_type: str) -> list[Resource]:
        return [s.resource for (kind, _), s in sorted(self.store.items()) if kind == resource_type]

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.failures:
            raise self.failures.pop(0)

    def search(self, resource_type: str, params: SearchParams) -> list[StoredResource]:
        self._call(f"search {resource_type}")
        return [
            s
            for (kind, _), s in sorted(self.store.items())
            if kind == resource_type and all(_matches(s.resource, k, v) for k, v in _values(params))
        ]

    def read(self, resource_type: str, resource_id: str) -> StoredResource | None:
        self._call(f"read {resource_type}")
        return self.store.get((resource_type, resource_id))

    def create_if_none_exist(self, resource: Resource, identifier: Identifier) -> StoredResource:
        self._call(f"create_if_none_exist {resource['resourceType']}")
        for (kind, _), stored in sorted(self.store.items()):
            if kind == resource["resourceType"] and identifier.token in _tokens(stored.resource):
                return stored
        created = self.put({k: v for k, v in resource.items() if k != "id"})
        return StoredResource(created.id, created.version, created.resource, created=True)

    def update(self, resource: Resource, version: str | None) -> StoredResource:
        self._call(f"update {resource['resourceType']}")
        current = self.store.get((str(resource["resourceType"]), str(resource["id"])))
        if current is None or (version is not None and version != current.version):
            raise RetryableEhrError("version conflict", status=412)
        return self.put(resource)

    def create(self, resource: Resource) -> StoredResource:
        self._call(f"create {resource['resourceType']}")
        created = self.put({k: v for k, v in resource.items() if k != "id"})
        return StoredResource(created.id, created.version, created.resource, created=True)

    def read_batch(self, requests: Sequence[ReadRequest]) -> list[BatchAnswer]:
        self._call(f"batch {len(requests)}")
        return read_each(_Quiet(self), requests)


class _Quiet:
    """The fake's reads inside a batch: answered without counting as calls of their own."""

    def __init__(self, ehr: MemoryEhr) -> None:
        self._ehr = ehr

    def search(self, resource_type: str, params: SearchParams) -> list[StoredResource]:
        return [
            s
            for (kind, _), s in sorted(self._ehr.store.items())
            if kind == resource_type and all(_matches(s.resource, k, v) for k, v in _values(params))
        ]

    def read(self, resource_type: str, resource_id: str) -> StoredResource | None:
        return self._ehr.store.get((resource_type, resource_id))


KEY = b"unit-test-pseudonym-key"
SYSTEMS = IdentifierSystems("https://cal-ehr-bridge.dev/fhir/sid")
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


class Bridge:
    """One sync service over fakes: the store, the EHR (with the demo Practitioner) and the audit trail."""

    def __init__(self) -> None:
        self.audit = MemoryAudit()
        self.store = MemoryLineageStore(self.audit)
        practitioners = json.loads((DEMO_DIR / "practitioners.json").read_text(encoding="utf-8"))
        self.ehr = MemoryEhr(*practitioners)
        self.service: SyncService = sync_service(
            store=self.store,
            ehr=self.ehr,
            config=load_config(f"file:{DEMO_CONFIG}"),
            systems=SYSTEMS,
            pseudonym_key=KEY,
            audit=self.audit,
            clock=lambda: NOW,
        )

    def deliver(self, document: dict[str, Any]) -> SyncResult:
        return self.service.process(compact(document).decode("utf-8"))

    def appointments(self) -> list[dict[str, Any]]:
        return self.ehr.of_type("Appointment")
