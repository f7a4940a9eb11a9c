"""The EHR port: what the sync logic needs from an EHR, independent of FHIR/HL7 details."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from shared.domain.identifiers import Identifier, Resource
from shared.errors import EhrError

__all__ = [
    "BatchAnswer",
    "EhrClient",
    "EhrReader",
    "Identifier",
    "ReadAnswer",
    "ReadRequest",
    "Resource",
    "SearchParams",
    "StoredResource",
    "read_each",
]

#: Search parameters: a mapping, or (name, value) pairs when a name repeats (`date=ge…&date=lt…`).
SearchParams = Mapping[str, str] | Sequence[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class StoredResource:
    id: str
    version: str | None
    resource: Resource
    created: bool = False


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """One read of a batch: a search (`params` set) or a read by id (`resource_id` set). Hashable and equal
    for equal requests, whichever form the search parameters were given in."""

    resource_type: str
    params: tuple[tuple[str, str], ...] | None = None
    resource_id: str | None = None

    @classmethod
    def search(cls, resource_type: str, params: SearchParams) -> ReadRequest:
        """`GET <type>?<params>` (pairs keep their order)."""
        pairs = params.items() if isinstance(params, Mapping) else params
        return cls(resource_type, params=tuple((str(k), str(v)) for k, v in pairs))

    @classmethod
    def read(cls, resource_type: str, resource_id: str) -> ReadRequest:
        """`GET <type>/<id>`."""
        return cls(resource_type, resource_id=resource_id)


#: A search answers its matches; a read the resource, or None when it does not exist (404/410).
ReadAnswer = list[StoredResource] | StoredResource | None
#: One request's answer in a batch, or the error the same single call would have raised (raised by
#: whoever consumes that answer, so an error surfaces exactly where the single call would have raised it).
BatchAnswer = ReadAnswer | EhrError


class EhrReader(Protocol):
    """The read side of an EHR (what `read_each` needs)."""

    def search(self, resource_type: str, params: SearchParams) -> list[StoredResource]: ...

    def read(self, resource_type: str, resource_id: str) -> StoredResource | None: ...


class EhrClient(Protocol):
    """One adapter per EHR protocol. Raises `RetryableEhrError` / `PermanentEhrError` only."""

    def search(self, resource_type: str, params: SearchParams) -> list[StoredResource]: ...

    def read(self, resource_type: str, resource_id: str) -> StoredResource | None: ...

    def create_if_none_exist(self, resource: Resource, identifier: Identifier) -> StoredResource: ...

    def update(self, resource: Resource, version: str | None) -> StoredResource: ...

    def create(self, resource: Resource) -> StoredResource:
        """A plain create, for records that are never updated (Provenance)."""
        ...

    def read_batch(self, requests: Sequence[ReadRequest]) -> list[BatchAnswer]:
        """The answers of independent reads, in order (one FHIR `batch` where the profile supports it).
        A malformed answer as a whole raises `RetryableEhrError`."""
        ...


def read_each(ehr: EhrReader, requests: Sequence[ReadRequest]) -> list[BatchAnswer]:
    """`read_batch` as one call per request: for EHRs without batch support."""
    answers: list[BatchAnswer] = []
    for request in requests:
        try:
            if request.resource_id is not None:
                answers.append(ehr.read(request.resource_type, request.resource_id))
            else:
                answers.append(ehr.search(request.resource_type, request.params or ()))
        except EhrError as exc:
            answers.append(exc)
    return answers
