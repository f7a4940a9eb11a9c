"""The local FHIR server's scheduling stand-in over real sockets: Schedule/Slot rules and search, $find/$book in
the Argonaut, IHE and Epic dialects, Oracle's slot-referenced create and JSON Patch, Canvas's double-booking rule
and computed Slots, the front desk taking a slot, and concurrent bookings of one slot.

Outputs are checked with fhir.resources (R4B models, which match R4 for these resources), not with the
server's own validator.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.appointment import Appointment
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.operationoutcome import OperationOutcome

from devstack.fhir_server import LocalFhirServer, missing_prerequisites

pytestmark = pytest.mark.integration

FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
STAFF = {**FHIR_JSON, "X-EHR-Staff": "true"}  # a change made inside the EHR, not through its API
VISIT = {"system": "http://example.org/visit-type", "code": "follow-up"}
DAY = "2027-03-01"


@pytest.fixture(scope="module")
def fhir() -> Iterator[LocalFhirServer]:
    if reason := missing_prerequisites():
        pytest.skip(reason)
    with LocalFhirServer() as server:
        yield server


@pytest.fixture
def client(fhir: LocalFhirServer) -> Iterator[httpx.Client]:
    fhir.reset()
    fhir.set_scheduling("generic")
    with httpx.Client(base_url=fhir.base_url, headers=FHIR_JSON, timeout=20.0, trust_env=False) as c:
        yield c
    fhir.set_scheduling("generic")


def created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    document: dict[str, Any] = response.json()
    return document


def at(hour: int, minute: int = 0) -> str:
    return f"{DAY}T{hour:02d}:{minute:02d}:00Z"


class Clinic:
    """A Practitioner at a Location with a Schedule of 30-minute Slots (built by staff inside the EHR)."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        post = self.post
        self.practitioner = post({"resourceType": "Practitioner", "name": [{"family": "Whitfield"}]})
        self.other = post({"resourceType": "Practitioner", "name": [{"family": "Okafor"}]})
        self.location = post({"resourceType": "Location", "name": "Main"})
        self.patient = post({"resourceType": "Patient", "name": [{"family": "Reyes"}]})
        self.schedule = post(
            {
                "resourceType": "Schedule",
                "actor": [{"reference": self.ref(self.practitioner)}, {"reference": self.ref(self.location)}],
                "serviceType": [{"coding": [VISIT]}],
            }
        )
        self.other_schedule = post({"resourceType": "Schedule", "actor": [{"reference": self.ref(self.other)}]})
        self.free = [self.slot(at(15)), self.slot(at(15, 30)), self.slot(at(16))]
        self.lunch = self.slot(at(16), status="busy-unavailable", minutes=60)  # over the 16:00 free Slot
        self.elsewhere = self.slot(at(15), schedule=self.other_schedule)

    @staticmethod
    def ref(resource: dict[str, Any]) -> str:
        return f"{resource['resourceType']}/{resource['id']}"

    def post(self, resource: dict[str, Any]) -> dict[str, Any]:
        return created(self.client.post(f"/{resource['resourceType']}", json=resource, headers=STAFF))

    def slot(
        self, start: str, *, status: str = "free", minutes: int = 30, schedule: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        hour, minute = int(start[11:13]), int(start[14:16]) + minutes
        end = at(hour + minute // 60, minute % 60)
        typed = {} if schedule else {"serviceType": [{"coding": [VISIT]}]}  # Oracle's Slots carry it
        return self.post(
            {
                "resourceType": "Slot",
                **typed,
                "schedule": {"reference": self.ref(schedule or self.schedule)},
                "status": status,
                "start": start,
                "end": end,
            }
        )

    def read(self, resource: dict[str, Any]) -> dict[str, Any]:
        response = self.client.get(f"/{self.ref(resource)}")
        assert response.status_code == 200, response.text
        document: dict[str, Any] = response.json()
        return document


def valid_bundle(response: httpx.Response) -> dict[str, Any]:
    document: dict[str, Any] = response.json()
    Bundle.model_validate(document)
    return document


def resources(bundle: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", []) if e["resource"]["resourceType"] == resource_type]


def parameters(**values: Any) -> dict[str, Any]:
    """Operation parameters; `patient_id` is sent as `patient-id`, `_count` as `_count`."""
    names = {k: k if k.startswith("_") else k.replace("_", "-") for k in values}
    return {"resourceType": "Parameters", "parameter": [{"name": names[k], **v} for k, v in values.items()]}


# -- write rules ------------------------------------------------------------------------------------------
def test_slot_status_outside_the_value_set_is_refused_on_create_update_and_patch(client: httpx.Client) -> None:
    clinic = Clinic(client)
    slot = clinic.free[0]
    bad = {**slot, "status": "open"}
    assert client.put(f"/Slot/{slot['id']}", json=bad).status_code == 400
    response = client.post("/Slot", json={k: v for k, v in bad.items() if k not in ("id", "meta")})
    assert response.status_code == 400 and response.json()["issue"][0]["code"] == "code-invalid"
    patch = [{"op": "replace", "path": "/status", "value": "taken"}]
    response = client.patch(f"/Slot/{slot['id']}", json=patch, headers={"Content-Type": "application/json-patch+json"})
    assert response.status_code == 400 and "not in required value set" in response.text
    assert clinic.read(slot)["status"] == "free"


def test_slot_end_before_start_and_a_schedule_that_does_not_exist_are_refused(client: httpx.Client) -> None:
    clinic = Clinic(client)
    backwards = {
        "resourceType": "Slot",
        "schedule": {"reference": clinic.ref(clinic.schedule)},
        "status": "free",
        "start": at(10),
        "end": at(9, 30),
    }
    response = client.post("/Slot", json=backwards)
    assert response.status_code == 400 and response.json()["issue"][0]["code"] == "invariant"
    orphan = {**backwards, "end": at(10, 30), "schedule": {"reference": "Schedule/nowhere"}}
    response = client.post("/Slot", json=orphan)
    assert response.status_code == 400 and "Slot.schedule" in response.text


def test_questionnaire_response_status_is_checked_against_its_value_set(client: httpx.Client) -> None:
    answers = {
        "resourceType": "QuestionnaireResponse",
        "status": "done",
        "questionnaire": "https://clinic.example/Questionnaire/intake",
    }
    response = client.post("/QuestionnaireResponse", json=answers)
    assert response.status_code == 400
    assert "in-progress | completed | amended | entered-in-error | stopped" in response.text
    assert client.post("/QuestionnaireResponse", json={**answers, "status": "completed"}).status_code == 201


# -- search -------------------------------------------------------------------------------------------------
def test_chained_schedule_actor_search_finds_the_practitioners_slots_only(client: httpx.Client) -> None:
    clinic = Clinic(client)
    practitioner = clinic.ref(clinic.practitioner)
    bundle = valid_bundle(client.get("/Slot", params={"schedule.actor": practitioner, "status": "free"}))
    assert {s["id"] for s in resources(bundle, "Slot")} == {s["id"] for s in clinic.free}
    typed = valid_bundle(client.get("/Slot", params={"schedule:Schedule.actor": practitioner}))
    assert typed["total"] == 4  # the three free Slots and the lunch block
    by_location = client.get("/Slot", params={"schedule.actor": clinic.ref(clinic.location)}).json()
    assert by_location["total"] == 4
    nobody = client.get("/Slot", params={"schedule.actor": "Practitioner/nobody"}).json()
    assert nobody["total"] == 0  # nothing, not everything


def test_include_slot_schedule_adds_the_schedules_marked_include(client: httpx.Client) -> None:
    clinic = Clinic(client)
    bundle = valid_bundle(client.get("/Slot", params={"status": "free", "_include": "Slot:schedule"}))
    modes = {e["resource"]["resourceType"]: e["search"]["mode"] for e in bundle["entry"]}
    assert modes == {"Slot": "match", "Schedule": "include"}
    schedules = resources(bundle, "Schedule")
    assert {s["id"] for s in schedules} == {clinic.schedule["id"], clinic.other_schedule["id"]}
    assert bundle["total"] == 4  # matches only


def test_unknown_search_parameter_is_400_by_default_and_ignored_when_lenient_is_asked(client: httpx.Client) -> None:
    Clinic(client)
    strict = client.get("/Slot", params={"end": f"gt{at(15)}"})
    assert strict.status_code == 400
    OperationOutcome.model_validate(strict.json())
    assert strict.json()["issue"][0]["details"]["text"] == "Unknown search parameter: end"
    lenient = client.get(
        "/Slot", params={"end": f"gt{at(15)}", "status": "free"}, headers={"Prefer": "handling=lenient"}
    )
    bundle = valid_bundle(lenient)
    assert bundle["total"] == 4  # the free Slots, `end` not applied
    [warning] = [e for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    assert "end" in warning["resource"]["issue"][0]["details"]["text"]
    self_link = next(link["url"] for link in bundle["link"] if link["relation"] == "self")
    assert "status=free" in self_link and "end=" not in self_link


def test_a_server_started_lenient_ignores_unknown_parameters_unless_strict_is_asked() -> None:
    with (
        LocalFhirServer(search_handling="lenient") as server,
        httpx.Client(base_url=server.base_url, trust_env=False) as c,
    ):
        assert c.get("/Patient", params={"favourite-colour": "blue"}).status_code == 200
        assert (
            c.get("/Patient", params={"favourite-colour": "blue"}, headers={"Prefer": "handling=strict"}).status_code
            == 400
        )


# -- $find / $book ----------------------------------------------------------------------------------------
def find(client: httpx.Client, dialect: str, clinic: Clinic, **extra: dict[str, Any]) -> httpx.Response:
    names = ("startTime", "endTime") if dialect == "epic" else ("start", "end")
    body = parameters(**{names[0]: {"valueDateTime": at(8)}, names[1]: {"valueDateTime": at(18)}}, **extra)
    return client.post("/Appointment/$find", json=body)


@pytest.mark.parametrize("dialect", ["argonaut", "ihe", "epic"])
def test_find_proposes_the_free_bookable_slots_in_start_order(
    fhir: LocalFhirServer, client: httpx.Client, dialect: str
) -> None:
    clinic = Clinic(client)
    fhir.set_scheduling(dialect)
    practitioner = {"valueUri": clinic.ref(clinic.practitioner)}
    if dialect == "ihe":
        practitioner = {"valueReference": {"reference": clinic.ref(clinic.practitioner)}}
    bundle = valid_bundle(find(client, dialect, clinic, practitioner=practitioner))
    proposals = resources(bundle, "Appointment")
    # 16:00 lies under the lunch block; the other practitioner's 15:00 is not theirs.
    assert [p["start"] for p in proposals] == [at(15), at(15, 30)] and bundle["total"] == 2
    for proposal in proposals:
        Appointment.model_validate(proposal)
        assert proposal["status"] == "proposed"
        assert {p["status"] for p in proposal["participant"]} == {"needs-action"}
        assert proposal["requestedPeriod"] == [{"start": at(8), "end": at(18)}]
    if dialect == "epic":
        assert (
            proposals[0]["slot"] == [{"reference": "#slot"}] and proposals[0]["contained"][0]["resourceType"] == "Slot"
        )
    else:
        assert proposals[0]["slot"] == [{"reference": clinic.ref(clinic.free[0])}]
    # Proposals are not stored: the Appointment list and the slots are unchanged.
    assert client.get("/Appointment").json()["total"] == 0
    assert clinic.read(clinic.free[0])["status"] == "free"


def test_find_filters_by_visit_type_and_count(fhir: LocalFhirServer, client: httpx.Client) -> None:
    clinic = Clinic(client)
    fhir.set_scheduling("argonaut")
    wrong = find(client, "argonaut", clinic, visit_type={"valueString": "http://example.org/visit-type|new"}).json()
    assert wrong["total"] == 0 and "entry" not in wrong  # "An empty bundle means no available appointments"
    right = find(
        client,
        "argonaut",
        clinic,
        visit_type={"valueString": f"{VISIT['system']}|{VISIT['code']}"},
        _count={"valueInteger": 1},
    ).json()
    assert right["total"] == 2 and len(right["entry"]) == 1  # 15:00 and 15:30; the other schedule has no type
    assert right["entry"][0]["resource"]["start"] == at(15)


def test_find_without_its_window_is_400_and_epic_answers_an_empty_find_with_its_outcome(
    fhir: LocalFhirServer, client: httpx.Client
) -> None:
    clinic = Clinic(client)
    fhir.set_scheduling("ihe")
    missing = client.post("/Appointment/$find", json=parameters(start={"valueDateTime": at(8)}))
    assert missing.status_code == 400 and missing.json()["issue"][0]["severity"] == "fatal"
    fhir.set_scheduling("epic")
    wrong_names = client.post(
        "/Appointment/$find", json=parameters(start={"valueDateTime": at(8)}, end={"valueDateTime": at(9)})
    )
    assert wrong_names.status_code == 400  # Epic's parameters are startTime/endTime
    empty = valid_bundle(
        find(client, "epic", clinic, serviceType={"valueCodeableConcept": {"coding": [{"code": "nope"}]}})
    )
    assert empty["total"] == 0
    [outcome] = resources(empty, "OperationOutcome")
    assert outcome["issue"][0]["details"]["coding"][0]["code"] == "4101"


def proposal_id(client: httpx.Client, dialect: str, clinic: Clinic, index: int = 0) -> str:
    bundle = find(client, dialect, clinic, practitioner={"valueUri": clinic.ref(clinic.practitioner)}).json()
    identifier: str = resources(bundle, "Appointment")[index]["id"]
    return identifier


def book(client: httpx.Client, dialect: str, proposal: str, patient: str) -> httpx.Response:
    if dialect == "epic":
        body = parameters(
            appointment={"valueIdentifier": {"value": proposal}},
            patient={"valueIdentifier": {"value": patient.split("/")[1]}},
        )
        return client.post("/Appointment/$book", json=body)
    if dialect == "ihe":
        body = parameters(
            appointment_reference={"valueReference": {"reference": f"Appointment/{proposal}"}},
            patient_reference={"valueReference": {"reference": patient}},
        )
        return client.post("/Appointment/$book", json=body)
    return client.post(f"/Appointment/{proposal}/$book", json=parameters(patient_id={"valueUri": patient}))


@pytest.mark.parametrize("dialect", ["argonaut", "ihe", "epic"])
def test_book_commits_the_proposal_and_marks_the_slot_busy(
    fhir: LocalFhirServer, client: httpx.Client, dialect: str
) -> None:
    clinic = Clinic(client)
    fhir.set_scheduling(dialect)
    response = book(client, dialect, proposal_id(client, dialect, clinic), clinic.ref(clinic.patient))
    assert response.status_code == 200, response.text
    [appointment] = resources(valid_bundle(response), "Appointment")
    Appointment.model_validate(appointment)
    assert appointment["status"] == "booked" and appointment["start"] == at(15)
    assert appointment["slot"] == [{"reference": clinic.ref(clinic.free[0])}]
    actors = {p["actor"]["reference"]: p["status"] for p in appointment["participant"]}
    assert actors == {clinic.ref(r): "accepted" for r in (clinic.practitioner, clinic.location, clinic.patient)}
    assert clinic.read(clinic.free[0])["status"] == "busy"
    stored = client.get(f"/Appointment/{appointment['id']}").json()
    assert stored["status"] == "booked"


def test_a_taken_slot_gets_each_dialects_answer(fhir: LocalFhirServer, client: httpx.Client) -> None:
    clinic = Clinic(client)
    patient = clinic.ref(clinic.patient)
    # Argonaut: HTTP 200, the Appointment cancelled with participants declined, and an OperationOutcome.
    fhir.set_scheduling("argonaut")
    proposal = proposal_id(client, "argonaut", clinic)
    assert book(client, "argonaut", proposal, patient).status_code == 200
    again = book(client, "argonaut", proposal, patient)
    assert again.status_code == 200
    bundle = valid_bundle(again)
    [rejected] = resources(bundle, "Appointment")
    assert rejected["status"] == "cancelled" and {p["status"] for p in rejected["participant"]} == {"declined"}
    assert resources(bundle, "OperationOutcome")[0]["issue"][0]["code"] == "conflict"
    # IHE: a Bundle holding only an OperationOutcome.
    fhir.set_scheduling("ihe")
    proposal = proposal_id(client, "ihe", clinic)
    fhir.take_slot(clinic.ref(clinic.free[1]))
    taken = valid_bundle(book(client, "ihe", proposal, patient))
    assert [e["resource"]["resourceType"] for e in taken["entry"]] == ["OperationOutcome"]
    # Epic: not public; the status and the code are the test's choice.
    fhir.set_scheduling("epic", epic_taken_status=409, epic_taken_code="TEST-TAKEN")
    client.put(f"/Slot/{clinic.free[1]['id']}", json={**clinic.read(clinic.free[1]), "status": "free"}, headers=STAFF)
    proposal = proposal_id(client, "epic", clinic)
    fhir.take_slot(clinic.ref(clinic.free[1]), appointment=True)
    epic = book(client, "epic", proposal, patient)
    assert epic.status_code == 409
    assert epic.json()["issue"][0]["details"]["coding"][0]["code"] == "TEST-TAKEN"


def test_book_of_an_unknown_proposal_is_not_found_in_each_dialects_form(
    fhir: LocalFhirServer, client: httpx.Client
) -> None:
    clinic = Clinic(client)
    fhir.set_scheduling("epic")
    epic = book(client, "epic", "no-such-proposal", clinic.ref(clinic.patient))
    assert epic.status_code == 400
    issue = epic.json()["issue"][0]
    assert (issue["severity"], issue["code"], issue["details"]["coding"][0]["code"]) == ("fatal", "not-found", "59144")
    fhir.set_scheduling("argonaut")
    assert book(client, "argonaut", "no-such-proposal", clinic.ref(clinic.patient)).status_code == 404


def test_book_refuses_a_patient_that_does_not_exist(fhir: LocalFhirServer, client: httpx.Client) -> None:
    clinic = Clinic(client)
    fhir.set_scheduling("argonaut")
    response = book(client, "argonaut", proposal_id(client, "argonaut", clinic), "Patient/ghost")
    assert response.status_code == 400 and "Invalid patient-reference" in response.text
    assert clinic.read(clinic.free[0])["status"] == "free"


def test_book_of_a_client_built_appointment_keeps_its_identifiers(fhir: LocalFhirServer, client: httpx.Client) -> None:
    clinic = Clinic(client)
    fhir.set_scheduling("argonaut")
    draft = {
        "resourceType": "Appointment",
        "status": "proposed",
        "identifier": [{"system": "https://cal-ehr-bridge.dev/fhir/sid/booking", "value": "uid-1"}],
        "meta": {"tag": [{"system": "https://cal-ehr-bridge.dev/fhir/sid/tag", "code": "calcom"}]},
        "slot": [{"reference": clinic.ref(clinic.free[1])}],
        "participant": [{"actor": {"reference": clinic.ref(clinic.patient)}, "status": "needs-action"}],
    }
    response = client.post("/Appointment/$book", json=parameters(appt_resource={"resource": draft}))
    assert response.status_code == 201 and "/Appointment/" in response.headers["Location"]
    [appointment] = resources(valid_bundle(response), "Appointment")
    assert appointment["identifier"] == draft["identifier"] and appointment["meta"]["tag"] == draft["meta"]["tag"]
    assert (appointment["start"], appointment["end"]) == (at(15, 30), at(16))
    assert clinic.read(clinic.free[1])["status"] == "busy"


def test_the_front_desk_taking_the_slot_first_parks_the_booking_and_find_offers_the_rest(
    fhir: LocalFhirServer, client: httpx.Client
) -> None:
    clinic = Clinic(client)
    fhir.set_scheduling("argonaut")
    proposal = proposal_id(client, "argonaut", clinic)
    desk = fhir.take_slot(clinic.ref(clinic.free[0]), appointment=True, patient=clinic.ref(clinic.patient))
    assert desk["slot"]["status"] == "busy" and desk["appointment"]["status"] == "booked"
    rejected = resources(book(client, "argonaut", proposal, clinic.ref(clinic.patient)).json(), "Appointment")[0]
    assert rejected["status"] == "cancelled"
    alternatives = resources(
        find(client, "argonaut", clinic, practitioner={"valueUri": clinic.ref(clinic.practitioner)}).json(),
        "Appointment",
    )
    assert [a["start"] for a in alternatives] == [at(15, 30)]


def test_cancelling_a_booked_appointment_frees_its_slot(fhir: LocalFhirServer, client: httpx.Client) -> None:
    clinic = Clinic(client)
    fhir.set_scheduling("argonaut")
    booked = resources(
        book(client, "argonaut", proposal_id(client, "argonaut", clinic), clinic.ref(clinic.patient)).json(),
        "Appointment",
    )[0]
    assert clinic.read(clinic.free[0])["status"] == "busy"
    assert client.put(f"/Appointment/{booked['id']}", json={**booked, "status": "cancelled"}).status_code == 200
    assert clinic.read(clinic.free[0])["status"] == "free"  # Argonaut state table: cancel -> Slot free
    again = resources(
        find(client, "argonaut", clinic, practitioner={"valueUri": clinic.ref(clinic.practitioner)}).json(),
        "Appointment",
    )
    assert at(15) in [a["start"] for a in again]


def concurrently(
    base_url: str, count: int, call: Callable[[httpx.Client, int], httpx.Response]
) -> list[httpx.Response]:
    """`count` threads, each with its own open connection (warmed up first), released together."""
    barrier = threading.Barrier(count)
    results: list[httpx.Response | None] = [None] * count

    def run(index: int) -> None:
        with httpx.Client(base_url=base_url, headers=FHIR_JSON, timeout=30.0, trust_env=False) as c:
            assert c.get("/metadata").status_code == 200  # the connection is up before the race starts
            barrier.wait()
            results[index] = call(c, index)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]


def race_for_one_slot(fhir: LocalFhirServer, clinic: Clinic, *, lock: bool) -> list[str]:
    """Twelve $book calls for proposals of the same Slot at once; returns each call's Appointment status.
    The race window (between reading the Slot and writing it) is longer than the spread of the arrivals."""
    fhir.set_scheduling("argonaut", race_window_ms=100 if lock else 300, lock=lock)
    with httpx.Client(base_url=fhir.base_url, headers=FHIR_JSON, trust_env=False) as c:
        proposals = [proposal_id(c, "argonaut", clinic) for _ in range(12)]

    def call(c: httpx.Client, index: int) -> httpx.Response:
        return book(c, "argonaut", proposals[index], clinic.ref(clinic.patient))

    outcomes = []
    for response in concurrently(fhir.base_url, 12, call):
        assert response.status_code == 200, response.text
        outcomes.append(resources(response.json(), "Appointment")[0]["status"])
    return outcomes


def test_concurrent_bookings_of_one_slot_exactly_one_wins(fhir: LocalFhirServer, client: httpx.Client) -> None:
    clinic = Clinic(client)
    outcomes = race_for_one_slot(fhir, clinic, lock=True)
    assert sorted(outcomes) == ["booked"] + ["cancelled"] * 11
    booked = client.get("/Appointment", params={"slot": clinic.ref(clinic.free[0]), "status": "booked"}).json()
    assert booked["total"] == 1


def test_without_the_lock_the_same_race_double_books(fhir: LocalFhirServer, client: httpx.Client) -> None:
    """The race test creates real concurrency: with the lock switched off, more than one request wins."""
    clinic = Clinic(client)
    outcomes = race_for_one_slot(fhir, clinic, lock=False)
    assert outcomes.count("booked") > 1


# -- Oracle ---------------------------------------------------------------------------------------------------
def oracle_booked(clinic: Clinic, slot: dict[str, Any]) -> dict[str, Any]:
    """Millennium's documented booked create (R4_APPOINTMENT_CREATE): no start/end, exactly one Slot."""
    return {
        "resourceType": "Appointment",
        "status": "booked",
        "slot": [{"reference": clinic.ref(slot)}],
        "participant": [{"actor": {"reference": clinic.ref(clinic.patient)}, "status": "accepted"}],
        "reasonCode": [{"text": "Follow-up"}],
    }


def path_of(location: str) -> str:
    """`http://127.0.0.1:<port>/Appointment/<id>` → `/Appointment/<id>`."""
    return "/" + location.split("/", 3)[3]


def test_oracle_booked_create_fills_the_appointment_from_its_slot_and_refuses_a_taken_one(
    fhir: LocalFhirServer, client: httpx.Client
) -> None:
    clinic = Clinic(client)
    fhir.set_scheduling("oracle")
    response = client.post("/Appointment", json=oracle_booked(clinic, clinic.free[0]))
    assert response.status_code == 201 and response.content == b""
    assert response.headers["ETag"].startswith('W/"') and "/Appointment/" in response.headers["Location"]
    appointment = client.get(path_of(response.headers["Location"])).json()
    Appointment.model_validate(appointment)
    assert (appointment["start"], appointment["end"]) == (at(15), at(15, 30))
    assert clinic.ref(clinic.practitioner) in {p["actor"]["reference"] for p in appointment["participant"]}
    assert clinic.read(clinic.free[0])["status"] == "busy"
    again = client.post("/Appointment", json=oracle_booked(clinic, clinic.free[0]))
    assert again.status_code == 422 and again.json()["issue"][0]["code"] == "business-rule"
    under_lunch = client.post("/Appointment", json=oracle_booked(clinic, clinic.free[2]))
    assert under_lunch.status_code == 422  # free, but a busy-unavailable Slot covers it


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"slot": []}, "no Slot"),
        ({"status": "pending"}, "status other than proposed/booked"),
        ({"participant": []}, "no Patient"),
        ({"implicitRules": "http://example.org/rules"}, "implicitRules"),
    ],
)
def test_oracle_create_rules_are_business_rule_errors(
    fhir: LocalFhirServer, client: httpx.Client, change: dict[str, Any], why: str
) -> None:
    clinic = Clinic(client)
    fhir.set_scheduling("oracle")
    response = client.post("/Appointment", json={**oracle_booked(clinic, clinic.free[0]), **change})
    assert response.status_code == 422, why
    assert clinic.read(clinic.free[0])["status"] == "free"


def test_oracle_writes_are_json_patch_with_if_match(fhir: LocalFhirServer, client: httpx.Client) -> None:
    clinic = Clinic(client)
    fhir.set_scheduling("oracle")
    path = path_of(client.post("/Appointment", json=oracle_booked(clinic, clinic.free[0])).headers["Location"])
    current = client.get(path)
    version = current.headers["ETag"]
    patch_headers = {"Content-Type": "application/json-patch+json"}
    cancel = [
        {"op": "replace", "path": "/status", "value": "cancelled"},
        {"op": "add", "path": "/cancelationReason", "value": {"text": "Provider unavailable"}},
    ]
    assert client.put(path, json=current.json()).status_code == 405
    assert client.patch(path, json=cancel, headers=patch_headers).status_code == 412
    assert client.patch(path, json=cancel, headers={**patch_headers, "If-Match": 'W/"stale"'}).status_code == 409
    wrong = client.patch(
        path, json=[{"op": "replace", "path": "/start", "value": at(9)}], headers={**patch_headers, "If-Match": version}
    )
    assert wrong.status_code == 422
    done = client.patch(path, json=cancel, headers={**patch_headers, "If-Match": version})
    assert done.status_code == 200 and done.headers["ETag"] != version
    assert client.get(path).json()["status"] == "cancelled"
    assert clinic.read(clinic.free[0])["status"] == "free"  # cancelling frees the Slot


def test_oracle_reschedule_by_replacing_the_slot(fhir: LocalFhirServer, client: httpx.Client) -> None:
    clinic = Clinic(client)
    fhir.set_scheduling("oracle")
    path = path_of(client.post("/Appointment", json=oracle_booked(clinic, clinic.free[0])).headers["Location"])
    headers = {"Content-Type": "application/json-patch+json"}
    busy = [{"op": "replace", "path": "/slot", "value": [{"reference": clinic.ref(clinic.free[2])}]}]
    version = client.get(path).headers["ETag"]
    assert client.patch(path, json=busy, headers={**headers, "If-Match": version}).status_code == 422
    move = [{"op": "replace", "path": "/slot", "value": [{"reference": clinic.ref(clinic.free[1])}]}]
    assert client.patch(path, json=move, headers={**headers, "If-Match": version}).status_code == 200
    moved = client.get(path).json()
    assert (moved["start"], moved["slot"]) == (at(15, 30), [{"reference": clinic.ref(clinic.free[1])}])
    assert [clinic.read(s)["status"] for s in clinic.free[:2]] == ["free", "busy"]


def test_oracle_slot_search_needs_service_type_and_a_start_range_and_returns_free_slots_only(
    fhir: LocalFhirServer, client: httpx.Client
) -> None:
    clinic = Clinic(client)
    fhir.set_scheduling("oracle")
    client.post("/Appointment", json=oracle_booked(clinic, clinic.free[1]))
    service = f"{VISIT['system']}|{VISIT['code']}"
    assert client.get("/Slot", params={"schedule.actor": clinic.ref(clinic.practitioner)}).status_code == 400
    assert client.get("/Slot", params={"service-type": service}).status_code == 400
    window = [("service-type", service), ("start", f"ge{DAY}T00:00:00Z"), ("start", f"lt{DAY}T23:00:00Z")]
    bundle = valid_bundle(client.get("/Slot", params=window))
    assert [s["start"] for s in resources(bundle, "Slot")] == [at(15), at(16)]  # free only, by start
    here = valid_bundle(client.get("/Slot", params=[*window, ("-location", clinic.ref(clinic.location))]))
    assert here["total"] == 2
    by_id = client.get("/Slot", params={"_id": clinic.free[1]["id"]}).json()
    assert resources(by_id, "Slot")[0]["status"] == "busy"  # "booked slots may still be retrieved" by _id


def test_staff_changes_are_not_bound_by_the_dialects_api_limits(fhir: LocalFhirServer, client: httpx.Client) -> None:
    clinic = Clinic(client)
    fhir.set_scheduling("epic")
    visit = {
        "resourceType": "Appointment",
        "status": "booked",
        "start": at(9),
        "end": at(9, 30),
        "participant": [{"actor": {"reference": clinic.ref(clinic.patient)}, "status": "accepted"}],
    }
    assert client.post("/Appointment", json=visit).status_code == 405  # Epic: $book only
    assert client.post("/Appointment", json=visit, headers=STAFF).status_code == 201
    assert client.get("/Slot", params={"status": "free"}).status_code == 403  # Slot.Read only
    assert client.get(f"/Slot/{clinic.free[0]['id']}").status_code == 200


# -- Canvas and generic ---------------------------------------------------------------------------------------
def visit(clinic: Clinic, start: str, end: str) -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "status": "booked",
        "start": start,
        "end": end,
        "participant": [
            {"actor": {"reference": clinic.ref(clinic.practitioner)}, "status": "accepted"},
            {"actor": {"reference": clinic.ref(clinic.patient)}, "status": "accepted"},
        ],
    }


def test_canvas_refuses_double_booking_only_when_the_site_disables_it(
    fhir: LocalFhirServer, client: httpx.Client
) -> None:
    clinic = Clinic(client)
    fhir.set_scheduling("canvas")
    assert client.post("/Appointment", json=visit(clinic, at(9), at(9, 30))).status_code == 201
    assert client.post("/Appointment", json=visit(clinic, at(9, 15), at(9, 45))).status_code == 201  # Canvas default
    fhir.set_scheduling("canvas", double_booking_allowed=False)
    response = client.post("/Appointment", json=visit(clinic, at(9, 20), at(9, 50)))
    assert response.status_code == 422
    assert response.json()["issue"][0]["details"]["text"] == "This appointment time is no longer available."
    assert client.post("/Appointment", json=visit(clinic, at(9, 45), at(10, 15))).status_code == 201  # touching is fine


def test_canvas_slot_search_computes_free_slots_of_a_schedule(fhir: LocalFhirServer, client: httpx.Client) -> None:
    clinic = Clinic(client)
    fhir.set_scheduling("canvas")
    client.post("/Appointment", json=visit(clinic, at(15, 10), at(15, 20)))
    assert client.get("/Slot", params={"start": DAY}).status_code == 400  # schedule is required
    bundle = valid_bundle(
        client.get(
            "/Slot",
            params={"schedule": clinic.ref(clinic.schedule), "start": DAY, "end": "2027-03-02", "duration": "10"},
        )
    )
    starts = [s["start"] for s in resources(bundle, "Slot")]
    assert starts == [at(15), at(15, 20), at(15, 30), at(15, 40), at(15, 50)]  # 16:00 is lunch
    assert all("id" not in s and s["status"] == "free" for s in resources(bundle, "Slot"))


def test_generic_keeps_slots_untouched_unless_slot_consistency_is_asked(
    fhir: LocalFhirServer, client: httpx.Client
) -> None:
    clinic = Clinic(client)
    appointment = {**visit(clinic, at(15), at(15, 30)), "slot": [{"reference": clinic.ref(clinic.free[0])}]}
    first = created(client.post("/Appointment", json=appointment))
    assert clinic.read(clinic.free[0])["status"] == "free"  # Medplum's own behaviour
    fhir.set_scheduling("generic", slot_consistency=True)
    second = created(
        client.post("/Appointment", json={**appointment, "slot": [{"reference": clinic.ref(clinic.free[1])}]})
    )
    assert clinic.read(clinic.free[1])["status"] == "busy"
    assert client.put(f"/Appointment/{second['id']}", json={**second, "status": "cancelled"}).status_code == 200
    assert clinic.read(clinic.free[1])["status"] == "free"
    assert first["status"] == "booked"


# -- launch option and CapabilityStatement ------------------------------------------------------------------
def test_the_dialect_is_a_launch_option_and_shows_in_the_capability_statement() -> None:
    with LocalFhirServer(scheduling="ihe") as server, httpx.Client(base_url=server.base_url, trust_env=False) as c:
        assert c.get("/$scheduling").json()["mode"] == "ihe"
        statement = c.get("/metadata").json()
        appointment = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Appointment")
        assert [o["name"] for o in appointment["operation"]] == ["find", "book"]
        assert appointment["operation"][1]["definition"].startswith("https://profiles.ihe.net/ITI/Scheduling/")


def test_an_unknown_dialect_is_refused_at_launch_and_at_runtime(fhir: LocalFhirServer) -> None:
    with pytest.raises(ValueError, match="scheduling must be one of"):
        LocalFhirServer(scheduling="cerner")
    with pytest.raises(RuntimeError, match="mode must be one of"):
        fhir.set_scheduling("cerner")
    with pytest.raises(RuntimeError, match="unknown option"):
        fhir.set_scheduling("argonaut", holdTtl=3)
