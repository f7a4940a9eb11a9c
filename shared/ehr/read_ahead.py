"""Read-ahead: the reads one sync attempt needs, sent to the EHR as one FHIR `batch`.

The sync knows every read of an attempt before it writes anything (slot guard searches, patient
matching searches, the read of its Appointment's read-merge-write); they are independent of each other.
`ReadAhead` wraps a route's `EhrClient`: `prefetch(requests)` sends them as one `read_batch` and keeps
the answers; a later `search`/`read` with exactly the same request is served from them **once**; any
other call goes to the EHR. The decision logic and the write protocol run unchanged on top. An entry
the EHR answered with a transient error raises that error when it is served, as the single call would;
one it refused for good is asked again on its own (some servers take reads but no searches in a batch),
so a refusal is always the single call's own.

Kept answers belong to one attempt of one worker: they are per thread (the sync runs records on threads
over one service), any write drops what is left (a read after a write must see it), and the sync drops
them at the end of every attempt (`drop`), so no answer outlives the lease it was read under.

An EHR whose `read_batch` is not one call (`batches_reads` false, e.g. Oracle Health) is never read
ahead: the reads stay where they were, each made only when needed.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from shared.ehr.port import (
    BatchAnswer,
    EhrClient,
    Identifier,
    ReadAnswer,
    ReadRequest,
    Resource,
    SearchParams,
    StoredResource,
)
from shared.errors import EhrError, PermanentEhrError
from shared.observability import logger

#: Fewer reads than this are left to the normal calls (a batch of one saves nothing).
MIN_BATCH = 2


class ReadAhead:
    """An `EhrClient` that serves an attempt's prefetched reads once, then passes through."""

    def __init__(self, inner: EhrClient) -> None:
        self._inner = inner
        self._local = threading.local()
        #: The EHR refused a batch for good (no batch support, a role without the batch permission): this
        #: container reads one by one from then on instead of paying a refused request every attempt.
        self._refused = False

    @property
    def inner(self) -> EhrClient:
        """The wrapped client."""
        return self._inner

    @property
    def batches_reads(self) -> bool:
        return not self._refused and bool(getattr(self._inner, "batches_reads", False))

    @property
    def pending(self) -> int:
        """How many answers this thread still keeps."""
        return len(self._kept())

    def _kept(self) -> dict[ReadRequest, BatchAnswer]:
        kept: dict[ReadRequest, BatchAnswer] | None = getattr(self._local, "answers", None)
        if kept is None:
            kept = self._local.answers = {}
        return kept

    def prefetch(self, requests: Sequence[ReadRequest]) -> int:
        """Send `requests` as one batch and keep the answers for this thread; returns how many are kept.

        Nothing is sent for fewer than `MIN_BATCH` distinct requests or when the EHR has no batch. A
        batch the EHR refuses for good (e.g. a server without batch support) is not an error here: the
        reads then go one by one as before, and so do every later attempt's in this container. A transient
        failure is raised (the attempt is retried)."""
        self.drop()
        unique = list(dict.fromkeys(requests))
        if len(unique) < MIN_BATCH or not self.batches_reads:
            return 0
        try:
            answers = self._inner.read_batch(unique)
        except PermanentEhrError as exc:
            self._refused = True
            logger.warning(
                "the EHR refused a read batch; this container reads one by one", extra={"ehr_status": exc.status}
            )
            return 0
        self._local.answers = dict(zip(unique, answers, strict=True))
        return len(unique)

    def drop(self) -> None:
        """Forget this thread's kept answers (end of an attempt, or a write)."""
        self._local.answers = {}

    def _take(self, request: ReadRequest) -> tuple[bool, ReadAnswer]:
        kept = self._kept()
        if request not in kept:
            return False, None
        answer = kept.pop(request)
        if isinstance(answer, PermanentEhrError):
            return False, None  # refused inside a batch (some servers take no searches there): ask alone
        if isinstance(answer, EhrError):
            raise answer
        return True, answer

    def search(self, resource_type: str, params: SearchParams) -> list[StoredResource]:
        found, answer = self._take(ReadRequest.search(resource_type, params))
        if found and isinstance(answer, list):
            return answer
        return self._inner.search(resource_type, params)

    def read(self, resource_type: str, resource_id: str) -> StoredResource | None:
        found, answer = self._take(ReadRequest.read(resource_type, resource_id))
        if found and not isinstance(answer, list):
            return answer
        return self._inner.read(resource_type, resource_id)

    def read_batch(self, requests: Sequence[ReadRequest]) -> list[BatchAnswer]:
        return self._inner.read_batch(requests)

    def create_if_none_exist(self, resource: Resource, identifier: Identifier) -> StoredResource:
        self.drop()
        return self._inner.create_if_none_exist(resource, identifier)

    def update(self, resource: Resource, version: str | None) -> StoredResource:
        self.drop()
        return self._inner.update(resource, version)

    def create(self, resource: Resource) -> StoredResource:
        self.drop()
        return self._inner.create(resource)
