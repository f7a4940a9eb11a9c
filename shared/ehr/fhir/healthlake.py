"""AWS HealthLake profile: client-chosen ids and plain PUT upserts instead of conditional create.

HealthLake search is eventually consistent, and conditional create is not documented, so dedupe
never relies on a search: the id of every resource the bridge creates is a UUIDv5 of
`<resourceType>|<our identifier token>`. `create_if_none_exist` reads that id and, when it is absent,
PUTs the resource under it (a PUT to a new id creates it). Two workers racing on the same lineage
write the same id, never two resources; the lineage state's optimistic concurrency settles which
projection wins. Updates are PUT with `If-Match`.

Searches (Patient by e-mail, Practitioner by NPI) are passed through unchanged. HealthLake takes FHIR
`batch` Bundles with read and search entries ("Bundling FHIR resources" in the HealthLake developer guide),
so an attempt's reads go as one batch like on a generic server.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from urllib.parse import quote

from shared.ehr.fhir.client import FhirProfileBase, FhirR4Client
from shared.ehr.port import BatchAnswer, Identifier, ReadRequest, Resource, StoredResource

#: Namespace of the bridge's deterministic resource ids (fixed forever: changing it re-creates everything).
ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://cal-ehr-bridge.dev/fhir/resource-id")


def deterministic_id(resource_type: str, identifier: Identifier) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, f"{resource_type}|{identifier.token}"))


class HealthLakeClient(FhirProfileBase):
    """`EhrClient` for AWS HealthLake (pass a `SigV4Auth`, or a SMART auth for SMART data stores)."""

    def __init__(self, fhir: FhirR4Client, *, use_if_match: bool = True) -> None:
        super().__init__(fhir)
        self._use_if_match = use_if_match

    def create_if_none_exist(self, resource: Resource, identifier: Identifier) -> StoredResource:
        resource_type = str(resource["resourceType"])
        resource_id = deterministic_id(resource_type, identifier)
        existing = self._fhir.read(resource_type, resource_id)
        if existing is not None:
            return existing
        body = {**resource, "id": resource_id}
        response = self._fhir.send("PUT", f"{resource_type}/{quote(resource_id, safe='')}", json=body)
        return self._fhir.stored(response, created=True)

    def update(self, resource: Resource, version: str | None) -> StoredResource:
        return self._fhir.update(resource, version if self._use_if_match else None)

    batches_reads = True

    def read_batch(self, requests: Sequence[ReadRequest]) -> list[BatchAnswer]:
        return self._fhir.read_batch(requests)
