"""The EHR port: what the sync logic needs from an EHR, independent of FHIR/HL7 details."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from shared.domain.identifiers import Identifier, Resource

__all__ = ["EhrClient", "Identifier", "Resource", "SearchParams", "StoredResource"]

#: Search parameters: a mapping, or (name, value) pairs when a name repeats (`date=ge…&date=lt…`).
SearchParams = Mapping[str, str] | Sequence[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class StoredResource:
    id: str
    version: str | None
    resource: Resource
    created: bool = False


class EhrClient(Protocol):
    """One adapter per EHR protocol. Raises `RetryableEhrError` / `PermanentEhrError` only."""

    def search(self, resource_type: str, params: SearchParams) -> list[StoredResource]: ...

    def read(self, resource_type: str, resource_id: str) -> StoredResource | None: ...

    def create_if_none_exist(self, resource: Resource, identifier: Identifier) -> StoredResource: ...

    def update(self, resource: Resource, version: str | None) -> StoredResource: ...

    def create(self, resource: Resource) -> StoredResource:
        """A plain create, for records that are never updated (Provenance)."""
        ...
