"""Reads as one FHIR `batch`: the Bundle sent, how each entry's answer maps to the port (over
httpx.MockTransport), the profiles' choice of batch or one call per read, and the read-ahead client."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle

from shared.ehr.fhir.client import FhirR4Client
from shared.ehr.fhir.healthlake import HealthLakeClient
from shared.ehr.fhir.oracle import InMemoryIdMap, OracleHealthClient
from shared.ehr.port import BatchAnswer, Identifier, ReadRequest, Resource, SearchParams, StoredResource
from shared.ehr.read_ahead import ReadAhead
from shared.errors import EhrError, PermanentEhrError, RetryableEhrError

BASE = "https://ehr.example/r4"
PHI = ("Jordan", "Reyes", "jordan.reyes@example.com", "1990-04-12")
BY_EMAIL = ReadRequest.search("Patient", {"email": "jordan.reyes@example.com"})
BY_ID = ReadRequest.search("Patient", {"identifier": "https://sid.example/person|pk-1"})
SLOT = ReadRequest.search(
    "Appointment",
    [("practitioner", "Practitioner/7"), ("date", "ge2025-06-09T15:00:00Z"), ("date", "lt2025-06-10T15:30:00Z")],
)
APPOINTMENT = ReadRequest.read("Appointment", "a 1")
PATIENT = {"resourceType": "Patient", "id": "p1", "meta": {"versionId": "4"}, "name": [{"family": "Reyes"}]}


def outcome(code: str) -> dict[str, Any]:
    # Diagnostics may echo what was searched for: they must never reach an error.
    return {"resourceType": "OperationOutcome", "issue": [{"code": code, "diagnostics": "Jordan Reyes 1990-04-12"}]}


def searchset(*resources: Resource) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources]
        + [{"resource": outcome("informational"), "search": {"mode": "outcome"}}],
    }


class BatchServer:
    """Answers every POST [base] with the given entries; records the requests."""

    def __init__(self, answer: Callable[[dict[str, Any]], httpx.Response]) -> None:
        self.answer = answer
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answer(json.loads(request.read()) if request.content else {})

    def client(self) -> FhirR4Client:
        return FhirR4Client(BASE, transport=httpx.MockTransport(self))


def batch_response(*entries: dict[str, Any]) -> Callable[[dict[str, Any]], httpx.Response]:
    return lambda _sent: httpx.Response(
        200, json={"resourceType": "Bundle", "type": "batch-response", "entry": list(entries)}
    )


def test_given_reads_then_one_post_of_a_valid_r4_batch_bundle_with_relative_get_urls_is_sent() -> None:
    server = BatchServer(batch_response(*[{"response": {"status": "200 OK"}, "resource": searchset()}] * 3,
                                        {"response": {"status": "404 Not Found"}}))  # fmt: skip
    server.client().read_batch([BY_ID, BY_EMAIL, SLOT, APPOINTMENT])
    (request,) = server.requests
    assert (request.method, str(request.url)) == ("POST", f"{BASE}/")
    assert request.headers["Content-Type"] == "application/fhir+json"
    sent = json.loads(request.read())
    checked = Bundle.model_validate(sent)  # an independent FHIR model accepts it
    assert checked.type == "batch"
    assert [(e.request.method, e.request.url) for e in checked.entry] == [
        ("GET", "Patient?identifier=https%3A%2F%2Fsid.example%2Fperson%7Cpk-1"),
        ("GET", "Patient?email=jordan.reyes%40example.com"),
        (
            "GET",
            "Appointment?practitioner=Practitioner%2F7&date=ge2025-06-09T15%3A00%3A00Z&date=lt2025-06-10T15%3A30%3A00Z",
        ),
        ("GET", "Appointment/a%201"),
    ]


def test_given_no_reads_then_nothing_is_sent() -> None:
    server = BatchServer(batch_response())
    assert server.client().read_batch([]) == []
    assert server.requests == []


def test_given_entry_answers_then_searches_give_matches_and_reads_the_resource_with_its_version() -> None:
    appointment = {"resourceType": "Appointment", "id": "a 1", "meta": {"versionId": "2"}, "status": "booked"}
    server = BatchServer(
        batch_response(
            {"response": {"status": "200 OK"}, "resource": searchset(PATIENT)},
            {"response": {"status": "200"}, "resource": searchset()},
            {"response": {"status": "200 OK", "etag": 'W/"9"'}, "resource": appointment},
            {"response": {"status": "200 OK"}, "resource": appointment},
            {"response": {"status": "404 Not Found", "outcome": outcome("not-found")}},
            {"response": {"status": "410 Gone"}},
        )
    )
    gone = ReadRequest.read("Appointment", "gone")
    answers = server.client().read_batch(
        [BY_ID, BY_EMAIL, APPOINTMENT, ReadRequest.read("Appointment", "b"), gone, gone]
    )
    assert answers[0] == [StoredResource("p1", "4", PATIENT)]  # the outcome entry of the searchset is skipped
    assert answers[1] == []
    assert answers[2] == StoredResource("a 1", "9", appointment)  # the entry's etag wins
    assert answers[3] == StoredResource("a 1", "2", appointment)  # else meta.versionId
    assert answers[4] is None and answers[5] is None  # a read of a missing resource: None, like `read`


@pytest.mark.parametrize(
    ("status", "error"),
    [
        ("429 Too Many Requests", RetryableEhrError),
        ("503 Service Unavailable", RetryableEhrError),
        ("500", RetryableEhrError),
        ("412 Precondition Failed", RetryableEhrError),
        ("401 Unauthorized", RetryableEhrError),
        ("400 Bad Request", PermanentEhrError),
        ("403 Forbidden", PermanentEhrError),
        ("404 Not Found", PermanentEhrError),  # for a search: not a missing resource but a refused search
        ("422 Unprocessable Entity", PermanentEhrError),
        ("", RetryableEhrError),
        ("OK", RetryableEhrError),
        ("302 Found", RetryableEhrError),
    ],
)
def test_given_an_entry_error_then_its_answer_is_the_error_a_single_call_would_raise(
    status: str, error: type[EhrError]
) -> None:
    server = BatchServer(
        batch_response(
            {"response": {"status": status, "outcome": outcome("processing")}},
            {"response": {"status": "200 OK"}, "resource": searchset(PATIENT)},
        )
    )
    failed, fine = server.client().read_batch([BY_EMAIL, BY_ID])
    assert type(failed) is error
    assert fine == [StoredResource("p1", "4", PATIENT)]  # the other entry is answered all the same
    assert isinstance(failed, EhrError)
    text = f"{failed} {failed.detail!r}"
    assert all(value not in text for value in PHI)  # neither the search values nor the diagnostics
    if status[:1] in ("4", "5"):
        assert failed.status == int(status[:3])


@pytest.mark.parametrize(
    "entry",
    [
        {"response": {"status": "200 OK"}},  # no resource
        {"response": {"status": "200 OK"}, "resource": PATIENT},  # a search answered by a non-Bundle
        "not an object",
        {"resource": searchset()},  # no response
    ],
)
def test_given_a_malformed_search_entry_then_its_answer_is_retryable(entry: Any) -> None:
    server = BatchServer(batch_response(entry, {"response": {"status": "404"}}))
    answer, missing = server.client().read_batch([BY_EMAIL, APPOINTMENT])
    assert isinstance(answer, RetryableEhrError)
    assert missing is None


def test_given_a_read_answered_with_another_resource_type_then_its_answer_is_retryable() -> None:
    server = BatchServer(
        batch_response({"response": {"status": "200 OK"}, "resource": PATIENT}, {"response": {"status": "404"}})
    )
    answer, _ = server.client().read_batch([APPOINTMENT, ReadRequest.read("Patient", "x")])
    assert isinstance(answer, RetryableEhrError)


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, json={"resourceType": "Bundle", "type": "batch-response", "entry": [{}]}),  # 1 for 2
        httpx.Response(200, json={"resourceType": "Bundle", "type": "batch-response"}),  # no entries
        httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset", "entry": [{}, {}]}),
        httpx.Response(200, json={"resourceType": "OperationOutcome", "issue": []}),
        httpx.Response(200, json=["not", "a", "bundle"]),
        httpx.Response(200, text="<html>gateway</html>"),
        httpx.Response(503, json=outcome("transient")),
        httpx.Response(429, json=outcome("throttled"), headers={"Retry-After": "7"}),
    ],
)
def test_given_a_malformed_or_failed_batch_answer_then_the_whole_batch_is_retryable(answer: httpx.Response) -> None:
    server = BatchServer(lambda _sent: answer)
    with pytest.raises(RetryableEhrError) as raised:
        server.client().read_batch([BY_EMAIL, BY_ID])
    assert all(value not in str(raised.value) for value in PHI)


def test_given_a_batch_the_server_refuses_then_it_is_permanent_without_phi() -> None:
    server = BatchServer(lambda _sent: httpx.Response(400, json=outcome("not-supported")))
    with pytest.raises(PermanentEhrError) as raised:
        server.client().read_batch([BY_EMAIL, BY_ID])
    assert raised.value.status == 400
    assert "not-supported" in str(raised.value)
    assert all(value not in str(raised.value) for value in PHI)


def test_profiles_healthlake_batches_and_oracle_reads_one_by_one() -> None:
    server = BatchServer(batch_response(*[{"response": {"status": "200 OK"}, "resource": searchset(PATIENT)}] * 2))
    healthlake = HealthLakeClient(server.client())
    assert healthlake.batches_reads
    assert healthlake.read_batch([BY_ID, BY_EMAIL]) == [[StoredResource("p1", "4", PATIENT)]] * 2
    assert [r.method for r in server.requests] == ["POST"]

    seen: list[str] = []

    def one_by_one(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        if request.url.path == "/r4/Appointment/a 1":
            return httpx.Response(503, json=outcome("transient"))
        return httpx.Response(200, json=searchset(PATIENT))

    oracle = OracleHealthClient(FhirR4Client(BASE, transport=httpx.MockTransport(one_by_one)), InMemoryIdMap())
    assert not oracle.batches_reads
    found, failed = oracle.read_batch([BY_ID, APPOINTMENT])
    assert found == [StoredResource("p1", "4", PATIENT)]
    assert isinstance(failed, RetryableEhrError)  # an error in its place, as in a batch
    assert seen == ["GET /r4/Patient", "GET /r4/Appointment/a 1"]


# -- the read-ahead client -------------------------------------------------------------------


class FakeEhr:
    """An in-process EHR double that records calls and answers each read with a fresh object."""

    batches_reads = True

    def __init__(self, answers: dict[ReadRequest, BatchAnswer] | None = None) -> None:
        self.calls: list[str] = []
        self.answers = answers or {}
        self.batch_error: EhrError | None = None

    def _answer(self, request: ReadRequest) -> BatchAnswer:
        return self.answers.get(request, [] if request.resource_id is None else None)

    def search(self, resource_type: str, params: SearchParams) -> list[StoredResource]:
        self.calls.append(f"search {resource_type}")
        return [StoredResource("live", "1", {"resourceType": resource_type, "id": "live"})]

    def read(self, resource_type: str, resource_id: str) -> StoredResource | None:
        self.calls.append(f"read {resource_type}")
        return StoredResource(resource_id, "live", {"resourceType": resource_type, "id": resource_id})

    def read_batch(self, requests: Sequence[ReadRequest]) -> list[BatchAnswer]:
        self.calls.append(f"batch {len(requests)}")
        if self.batch_error is not None:
            raise self.batch_error
        return [self._answer(r) for r in requests]

    def create_if_none_exist(self, resource: Resource, identifier: Identifier) -> StoredResource:
        self.calls.append("create_if_none_exist")
        return StoredResource("new", "1", resource, created=True)

    def update(self, resource: Resource, version: str | None) -> StoredResource:
        self.calls.append("update")
        return StoredResource(str(resource["id"]), "2", resource)

    def create(self, resource: Resource) -> StoredResource:
        self.calls.append("create")
        return StoredResource("prov", "1", resource, created=True)


KEPT = StoredResource("a 1", "kept", {"resourceType": "Appointment", "id": "a 1"})


def test_a_prefetched_read_is_served_once_then_the_ehr_is_asked() -> None:
    inner = FakeEhr({APPOINTMENT: KEPT, BY_EMAIL: [KEPT]})
    reads = ReadAhead(inner)
    assert reads.prefetch([BY_EMAIL, APPOINTMENT, BY_EMAIL]) == 2  # duplicates are sent once
    assert reads.search("Patient", [("email", "jordan.reyes@example.com")]) == [KEPT]  # pairs equal a mapping
    assert reads.read("Appointment", "a 1") == KEPT
    assert reads.read("Appointment", "a 1").version == "live"  # served once: the second read asks the EHR
    assert reads.search("Patient", {"email": "jordan.reyes@example.com"})[0].id == "live"
    assert inner.calls == ["batch 2", "read Appointment", "search Patient"]


def test_a_read_that_was_not_prefetched_goes_to_the_ehr() -> None:
    inner = FakeEhr({APPOINTMENT: KEPT})
    reads = ReadAhead(inner)
    reads.prefetch([APPOINTMENT, BY_ID])
    assert reads.read("Appointment", "other").version == "live"
    assert reads.search("Patient", {"email": "someone.else@example.com"})[0].id == "live"
    assert reads.search("Patient", {"identifier": "https://sid.example/person|pk-1", "_count": "1"})[0].id == "live"
    assert reads.pending == 2


@pytest.mark.parametrize(
    "write",
    [
        lambda ehr: ehr.create_if_none_exist({"resourceType": "Patient"}, Identifier("s", "v")),
        lambda ehr: ehr.update({"resourceType": "Appointment", "id": "a 1"}, "1"),
        lambda ehr: ehr.create({"resourceType": "Provenance"}),
    ],
)
def test_any_write_drops_what_is_kept(write: Callable[[ReadAhead], StoredResource]) -> None:
    inner = FakeEhr({APPOINTMENT: KEPT})
    reads = ReadAhead(inner)
    reads.prefetch([APPOINTMENT, BY_ID])
    write(reads)
    assert reads.pending == 0
    assert reads.read("Appointment", "a 1").version == "live"  # a read after a write sees the EHR


def test_drop_at_the_end_of_an_attempt_forgets_everything() -> None:
    reads = ReadAhead(FakeEhr({APPOINTMENT: KEPT}))
    reads.prefetch([APPOINTMENT, BY_ID])
    reads.drop()
    assert reads.pending == 0
    assert reads.read("Appointment", "a 1").version == "live"


def test_a_new_prefetch_replaces_what_an_earlier_one_kept() -> None:
    reads = ReadAhead(FakeEhr({APPOINTMENT: KEPT}))
    reads.prefetch([APPOINTMENT, BY_ID])
    reads.prefetch([BY_EMAIL, SLOT])
    assert reads.read("Appointment", "a 1").version == "live"


def test_one_read_or_an_ehr_without_batches_is_left_to_the_normal_call() -> None:
    inner = FakeEhr({APPOINTMENT: KEPT})
    reads = ReadAhead(inner)
    assert reads.prefetch([APPOINTMENT]) == 0
    assert reads.prefetch([APPOINTMENT, APPOINTMENT]) == 0
    inner.batches_reads = False
    assert reads.prefetch([APPOINTMENT, BY_ID]) == 0
    assert reads.read("Appointment", "a 1").version == "live"
    assert inner.calls == ["read Appointment"]


def test_a_transient_entry_error_is_raised_where_the_single_call_would_have_raised_it() -> None:
    throttled = RetryableEhrError("batch GET Patient (search) answered 429 (issues: throttled)", status=429)
    inner = FakeEhr({BY_EMAIL: throttled, APPOINTMENT: KEPT})
    reads = ReadAhead(inner)
    reads.prefetch([APPOINTMENT, BY_EMAIL])
    assert reads.read("Appointment", "a 1") == KEPT  # the other answer is unaffected
    with pytest.raises(RetryableEhrError) as raised:
        reads.search("Patient", {"email": "jordan.reyes@example.com"})
    assert raised.value is throttled
    assert reads.pending == 0
    assert inner.calls == ["batch 2"]


def test_an_entry_refused_for_good_is_asked_alone_so_a_refusal_is_the_single_calls_own() -> None:
    refused = PermanentEhrError("batch GET Patient (search) answered 400 (issues: not-supported)", status=400)
    inner = FakeEhr({BY_EMAIL: refused, APPOINTMENT: KEPT})
    reads = ReadAhead(inner)
    reads.prefetch([APPOINTMENT, BY_EMAIL])
    assert reads.search("Patient", {"email": "jordan.reyes@example.com"})[0].id == "live"
    assert inner.calls == ["batch 2", "search Patient"]


def test_a_refused_batch_falls_back_to_one_call_per_read_and_a_transient_failure_is_raised() -> None:
    inner = FakeEhr({APPOINTMENT: KEPT})
    reads = ReadAhead(inner)
    inner.batch_error = PermanentEhrError("POST  answered 405 (issues: not-supported)", status=405)
    assert reads.prefetch([APPOINTMENT, BY_ID]) == 0
    assert reads.read("Appointment", "a 1").version == "live"
    # refused once, never asked again by this container: later attempts read one by one straight away
    inner.batch_error = None
    assert reads.prefetch([APPOINTMENT, BY_ID]) == 0
    assert not reads.batches_reads
    assert inner.calls == ["batch 2", "read Appointment"]
    fresh = ReadAhead(inner)
    inner.batch_error = RetryableEhrError("POST timed out")
    with pytest.raises(RetryableEhrError):
        fresh.prefetch([APPOINTMENT, BY_ID])
    assert fresh.pending == 0 and fresh.batches_reads  # a transient failure is no refusal


def test_kept_answers_belong_to_the_thread_that_prefetched_them() -> None:
    inner = FakeEhr({APPOINTMENT: KEPT})
    reads = ReadAhead(inner)
    reads.prefetch([APPOINTMENT, BY_ID])
    other: list[StoredResource | None] = []
    worker = threading.Thread(target=lambda: (other.append(reads.read("Appointment", "a 1")), reads.drop()))
    worker.start()
    worker.join()
    assert other[0] is not None and other[0].version == "live"  # another worker never sees them ...
    assert reads.pending == 2  # ... nor drops them
    assert reads.read("Appointment", "a 1") == KEPT
