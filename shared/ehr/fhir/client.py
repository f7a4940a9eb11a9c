"""Generic FHIR R4 adapter (httpx): conditional create, version-aware update, search.

Authentication is an `httpx.Auth` (`shared.ehr.auth.smart`, `shared.ehr.auth.sigv4`) or a static bearer token.
Vendor profiles (`shared.ehr.profiles`) reuse this client's transport and error mapping.

Error classes: timeouts, connection errors, 429, 5xx, 409/412 (version conflicts) and 401 (expired
credentials) are retryable; other 4xx are permanent. Error details carry the HTTP status and the
OperationOutcome issue codes only - never diagnostics text, which may echo resource content.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from shared.ehr.port import (
    BatchAnswer,
    Identifier,
    ReadRequest,
    Resource,
    SearchParams,
    StoredResource,
    read_each,
)
from shared.errors import EhrError, PermanentEhrError, RetryableEhrError

FHIR_JSON = "application/fhir+json"
_RETRYABLE_STATUS = frozenset({401, 408, 409, 412, 423, 425, 429})
MAX_RETRY_AFTER_SECONDS = 900.0
#: `search_pages` follows at most this many `next` links (a broken server cannot loop forever).
MAX_SEARCH_PAGES = 100


def search_query(params: SearchParams) -> str:
    """`name=value&…`, each part percent-encoded; pairs keep their order and may repeat a name."""
    pairs = params.items() if isinstance(params, Mapping) else params
    return "&".join(f"{quote(k)}={quote(v, safe='')}" for k, v in pairs)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, min(float(value), MAX_RETRY_AFTER_SECONDS))
    except ValueError:
        return None


def _issue_codes(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return "no OperationOutcome"
    return _outcome_codes(body)


def _outcome_codes(body: Any) -> str:
    """The OperationOutcome's issue codes only: its diagnostics text may echo resource content (PHI)."""
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return "no OperationOutcome"
    codes = sorted({str(issue.get("code", "?")) for issue in body.get("issue", []) if isinstance(issue, dict)})
    return "issues: " + ",".join(codes) if codes else "empty OperationOutcome"


def _error(detail: str, status: int, retry_after: float | None = None) -> EhrError:
    """The error class of an HTTP status >= 400, the same for a single call and a batch entry."""
    if status in _RETRYABLE_STATUS or status >= 500:
        return RetryableEhrError(detail, status=status, retry_after=retry_after)
    return PermanentEhrError(detail, status=status)


def _version(response: httpx.Response, resource: Resource) -> str | None:
    return _versioned(response.headers.get("ETag"), resource)


def _versioned(etag: str | None, resource: Resource) -> str | None:
    if etag:
        return etag.removeprefix("W/").strip('"')
    meta = resource.get("meta") or {}
    version = meta.get("versionId")
    return str(version) if version is not None else None


class FhirR4Client:
    """One client per container, reused across invocations (keep-alive, bounded pool)."""

    def __init__(
        self,
        base_url: str,
        *,
        bearer_token: str | None = None,
        timeout_seconds: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        auth: httpx.Auth | None = None,
    ) -> None:
        """`auth`: an `httpx.Auth` applied to every request (SMART Backend Services, SigV4); it cannot be
        combined with the static `bearer_token`."""
        if bearer_token and auth is not None:
            raise ValueError("pass either bearer_token or auth, not both")
        headers = {"Accept": FHIR_JSON, "User-Agent": "cal-ehr-bridge/0.1"}
        if bearer_token:
            headers["Authorization"] = f"Bearer {bearer_token}"
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.base_url + "/",
            headers=headers,
            timeout=httpx.Timeout(timeout_seconds, connect=min(5.0, timeout_seconds)),
            limits=httpx.Limits(max_connections=10, max_keepalive_connections=5),
            transport=transport,
            auth=auth,
        )

    def close(self) -> None:
        self._client.close()

    def send(
        self,
        method: str,
        url: str,
        *,
        json: Resource | None = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """One request relative to the base URL; answers >= 400 raise the adapter's error classes."""
        return self._send(method, url, json=json, content=content, headers=headers)

    def _send(
        self,
        method: str,
        url: str,
        *,
        json: Resource | None = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        request_headers = dict(headers or {})
        if json is not None:
            request_headers["Content-Type"] = FHIR_JSON
        try:
            response = self._client.request(method, url, json=json, content=content, headers=request_headers)
        except httpx.TimeoutException as exc:
            raise RetryableEhrError(f"{method} timed out") from exc
        except httpx.TransportError as exc:
            raise RetryableEhrError(f"{method} failed to connect ({type(exc).__name__})") from exc
        status = response.status_code
        if status < 400:
            return response
        detail = f"{method} {url.split('?', 1)[0]} answered {status} ({_issue_codes(response)})"
        raise _error(detail, status, _retry_after(response))

    @staticmethod
    def stored(response: httpx.Response, *, created: bool = False) -> StoredResource:
        resource = FhirR4Client._body(response)
        return StoredResource(
            id=str(resource["id"]), version=_version(response, resource), resource=resource, created=created
        )

    def capabilities(self) -> Resource | None:
        """The server's CapabilityStatement (`GET metadata`), or None when it has none."""
        try:
            response = self._send("GET", "metadata")
        except PermanentEhrError as exc:
            if exc.status in (404, 405, 410, 501):
                return None
            raise
        body = self._body(response)
        return body if body.get("resourceType") == "CapabilityStatement" else None

    @staticmethod
    def _body(response: httpx.Response) -> Resource:
        try:
            body: Any = response.json()
        except ValueError as exc:
            raise RetryableEhrError(f"EHR answered {response.status_code} with a non-JSON body") from exc
        if not isinstance(body, dict):
            raise RetryableEhrError("EHR answered with a non-object JSON body")
        return body

    def search(self, resource_type: str, params: SearchParams) -> list[StoredResource]:
        """The first page of a search (matches only: `include`/`outcome` entries are skipped)."""
        query = search_query(params)
        response = self._send("GET", f"{resource_type}?{query}" if query else resource_type, headers=None)
        return _matches(self._body(response), resource_type)

    def search_pages(
        self, resource_type: str, params: SearchParams, *, max_pages: int = MAX_SEARCH_PAGES
    ) -> Iterator[list[StoredResource]]:
        """Every page of a search, following the Bundle's `next` links. A link to another origin is not
        followed (the client's credentials go only to the EHR); more than `max_pages` is a retryable error."""
        query = search_query(params)
        url = f"{resource_type}?{query}" if query else resource_type
        origin = urlsplit(self.base_url)[:2]
        for _ in range(max_pages):
            bundle = self._body(self._send("GET", url))
            yield _matches(bundle, resource_type)
            following = next(
                (
                    link.get("url")
                    for link in bundle.get("link") or []
                    if isinstance(link, dict) and link.get("relation") == "next"
                ),
                None,
            )
            if not isinstance(following, str) or not following:
                return
            if urlsplit(following)[:2] != origin:
                raise PermanentEhrError(f"GET {resource_type} paging links to another origin")
            url = following
        raise RetryableEhrError(f"GET {resource_type} has more than {max_pages} pages")

    def read(self, resource_type: str, resource_id: str) -> StoredResource | None:
        try:
            response = self._send("GET", f"{resource_type}/{quote(resource_id, safe='')}")
        except PermanentEhrError as exc:
            if exc.status in (404, 410):
                return None
            raise
        resource = self._body(response)
        return StoredResource(id=str(resource["id"]), version=_version(response, resource), resource=resource)

    #: This server takes a FHIR `batch` Bundle (`shared.ehr.read_ahead` sends reads ahead only then).
    batches_reads = True

    def read_batch(self, requests: Sequence[ReadRequest]) -> list[BatchAnswer]:
        """The answers of `requests` from one `POST [base]` of a FHIR `batch` Bundle (`batch_bundle`).
        An entry's error status is returned in its place, classed like the single call's; an answer that
        is not a `batch-response` with one entry per request raises `RetryableEhrError`."""
        if not requests:
            return []
        bundle = self._body(self._send("POST", "", json=batch_bundle(requests)))
        entries = bundle.get("entry") or []
        if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "batch-response":
            raise RetryableEhrError("POST batch answered without a batch-response Bundle")
        if not isinstance(entries, list) or len(entries) != len(requests):
            count = len(entries) if isinstance(entries, list) else 0
            raise RetryableEhrError(f"POST batch answered {count} entries for {len(requests)} requests")
        return [_batch_answer(request, entry) for request, entry in zip(requests, entries, strict=True)]

    def create_if_none_exist(self, resource: Resource, identifier: Identifier) -> StoredResource:
        response = self._send(
            "POST",
            str(resource["resourceType"]),
            json=resource,
            headers={"If-None-Exist": f"identifier={quote(identifier.token, safe='')}"},
        )
        stored = self._body(response)
        return StoredResource(
            id=str(stored["id"]),
            version=_version(response, stored),
            resource=stored,
            created=response.status_code == 201,
        )

    def create(self, resource: Resource) -> StoredResource:
        response = self._send("POST", str(resource["resourceType"]), json=resource)
        stored = self._body(response)
        return StoredResource(id=str(stored["id"]), version=_version(response, stored), resource=stored, created=True)

    def update(self, resource: Resource, version: str | None) -> StoredResource:
        headers = {"If-Match": f'W/"{version}"'} if version else {}
        response = self._send(
            "PUT", f"{resource['resourceType']}/{quote(str(resource['id']), safe='')}", json=resource, headers=headers
        )
        stored = self._body(response)
        return StoredResource(id=str(stored["id"]), version=_version(response, stored), resource=stored)


def request_url(request: ReadRequest) -> str:
    """The relative URL of a read (`Patient/<id>`) or a search (`Patient?email=…`), as a single call sends it."""
    if request.resource_id is not None:
        return f"{request.resource_type}/{quote(request.resource_id, safe='')}"
    query = search_query(request.params or ())
    return f"{request.resource_type}?{query}" if query else request.resource_type


def batch_bundle(requests: Sequence[ReadRequest]) -> Resource:
    """A FHIR R4 `batch` Bundle of GETs, one entry per request, in order."""
    return {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": request_url(request)}} for request in requests],
    }


def _entry_status(response: Any) -> int:
    """`"404 Not Found"` → 404; anything unparseable → 0."""
    text = str(response.get("status", "")).strip() if isinstance(response, dict) else ""
    head = text.split(" ", 1)[0]
    return int(head) if head.isdigit() else 0


def _batch_answer(request: ReadRequest, entry: Any) -> BatchAnswer:  # noqa: PLR0911 - one return per entry shape
    kind = "read" if request.resource_id is not None else "search"
    where = f"batch GET {request.resource_type} ({kind})"
    response = entry.get("response") if isinstance(entry, dict) else None
    status = _entry_status(response)
    if status >= 400:
        if kind == "read" and status in (404, 410):
            return None
        outcome = response.get("outcome") if isinstance(response, dict) else None
        return _error(f"{where} answered {status} ({_outcome_codes(outcome)})", status)
    if not 200 <= status < 300:
        return RetryableEhrError(f"{where} answered an entry without a valid status")
    resource = entry.get("resource") if isinstance(entry, dict) else None
    if kind == "search":
        if not isinstance(resource, dict) or resource.get("resourceType") != "Bundle":
            return RetryableEhrError(f"{where} answered without a searchset Bundle")
        return _matches(resource, request.resource_type)
    if not isinstance(resource, dict) or resource.get("resourceType") != request.resource_type or "id" not in resource:
        return RetryableEhrError(f"{where} answered without the resource")
    etag = response.get("etag") if isinstance(response, dict) else None
    return StoredResource(
        id=str(resource["id"]), version=_versioned(etag if isinstance(etag, str) else None, resource), resource=resource
    )


def _matches(bundle: Resource, resource_type: str) -> list[StoredResource]:
    found = []
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and resource.get("resourceType") == resource_type and "id" in resource:
            version = (resource.get("meta") or {}).get("versionId")
            found.append(StoredResource(id=str(resource["id"]), version=version, resource=resource))
    return found


class FhirProfileBase:
    """What every vendor profile shares: it owns a `FhirR4Client` and reads/searches through it unchanged.

    Profiles differ only in how they create and update (`create_if_none_exist`, `update`).
    """

    def __init__(self, fhir: FhirR4Client) -> None:
        self._fhir = fhir

    @property
    def fhir(self) -> FhirR4Client:
        return self._fhir

    def close(self) -> None:
        self._fhir.close()

    def search(self, resource_type: str, params: SearchParams) -> list[StoredResource]:
        return self._fhir.search(resource_type, params)

    def read(self, resource_type: str, resource_id: str) -> StoredResource | None:
        return self._fhir.read(resource_type, resource_id)

    def create(self, resource: Resource) -> StoredResource:
        return self._fhir.create(resource)

    #: Whether `read_batch` is one FHIR `batch` (a profile whose server takes batches says so); otherwise
    #: it is one call per request and the sync does not read ahead (`shared.ehr.read_ahead`).
    batches_reads = False

    def read_batch(self, requests: Sequence[ReadRequest]) -> list[BatchAnswer]:
        """One call per request (the default for EHRs whose batch support is not known)."""
        return read_each(self, requests)
