"""Hypothesis strategies for true Cal.com histories and the nasty ways they are delivered.

A *history* is what Cal.com did, in its own chronological order: one or two lineages, each a first
booking (created, requested then confirmed/rejected, or seated) followed by reschedule chains
(`iCalSequence` + 1 each), cancels (incl. the host's "request reschedule" and a rebook after it), seat
adds and seat cancels, no-show marks and unmarks, and MEETING_ENDED (also the stale one of a superseded
or cancelled booking that still races in). Every document is rendered from a fixture in
tests/fixtures/calcom with the body shape and time format of the Cal.com code path that sends it.

Cal.com misbehaving is part of the history: a *fork* (the same uid rescheduled twice) and a reschedule
whose `createdAt` is skewed earlier than events it follows (so `iCalSequence` and `createdAt` disagree).

The *delivered stream* then loses events (at random, and on purpose a reschedule that has a successor:
the successor names a uid nobody has seen), duplicates some anywhere in the stream, and permutes it.
`histories()` returns ``(history, stream)``; `delivered_in_order` is the part of the history the bridge
could know, in Cal.com's order: the reference model's input.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from hypothesis import strategies as st

from shared.clinic.mapping import ClinicConfig, PractitionerMapping
from shared.clinic.source import load_config
from tests.support.paths import FIXTURES as FIXTURES_DIR
from tests.support.spec.model import DEMO_CLINIC

FIXTURES = FIXTURES_DIR / "calcom"
B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
PATIENTS = (
    "jordan.reyes@example.com",
    "priya.castellano@example.org",
    "sam.okafor@example.net",
    "lee.morgan@example.com",
    "ana.silva@example.org",
)
GUEST = "plus.one@example.com"
#: (Cal.com user id, e-mail, name); both are mapped by `clinic()` (one by NPI, one by reference).
HOSTS = (
    (3107, "elena.whitfield@maplegrove-clinic.example", "Dr. Elena Whitfield"),
    (3122, "marcus.okafor@maplegrove-clinic.example", "Dr. Marcus Okafor"),
)
#: (id, slug, minutes); `by-visit-kind` types are left out.
EVENT_TYPES = ((1207, "telehealth-follow-up", 30), (1210, "new-patient-consult", 60))
SEATS = 4
#: Cal.com writes the booking row a moment before it sends the webhook.
WRITE_LAG = timedelta(milliseconds=250)
Z, MS_Z, OFFSET = "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.000Z", "%Y-%m-%dT%H:%M:%S+00:00"


@cache
def clinic() -> ClinicConfig:
    """The demo clinic mapping plus a second host mapped by reference (so hosts can change on reschedule)."""
    demo = load_config(DEMO_CLINIC)
    okafor = PractitionerMapping(calcom_user_id=HOSTS[1][0], email=HOSTS[1][1], reference="Practitioner/okafor")
    return demo.model_copy(update={"practitioners": [*demo.practitioners, okafor]})


@cache
def _fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def fixture_body(name: str) -> dict[str, Any]:
    """A fresh copy of one fixture document from tests/fixtures/calcom."""
    document: dict[str, Any] = json.loads(_fixture(name))
    return document


def _ms(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def body_bytes(document: dict[str, Any]) -> bytes:
    """The exact bytes Cal.com signs: compact JSON, UTF-8."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass
class Row:
    """Cal.com's booking row for one uid, in the true history."""

    uid: str
    booking_id: int
    ical_uid: str
    sequence: int
    start: datetime
    event_type: tuple[int | None, str, int]
    host: tuple[int, str, str]
    booker: str
    guests: tuple[str, ...] = ()
    seats: list[str] | None = None  # present seat holders; None for an unseated booking
    status: str = "ACCEPTED"
    created_at: datetime = datetime(2025, 1, 1, tzinfo=UTC)
    updated_at: datetime = datetime(2025, 1, 1, tzinfo=UTC)
    previous: Row | None = None  # the booking this one rescheduled
    ended: bool = False
    was_accepted: bool = False
    reschedule_requested: bool = False
    first_seat: str | None = None

    @property
    def end(self) -> datetime:
        return self.start + timedelta(minutes=self.event_type[2])


@dataclass
class _Calcom:
    """Renders Cal.com's webhook documents for the rows of one lineage."""

    draw: Any
    documents: list[tuple[datetime, dict[str, Any]]] = field(default_factory=list)

    def email(self, person: str) -> str:
        # The same person typed differently: the bridge and the model compare lower-cased e-mails.
        return person.title() if self.draw(st.integers(0, 4)) == 0 else person

    def emit(self, at: datetime, document: dict[str, Any], created_at: datetime | None = None) -> None:
        if "payload" in document:
            document["createdAt"] = _ms(created_at or at)
        self.documents.append((at, document))

    def booking(self, fixture: str, row: Row, time_format: str, *, sequence: bool = True) -> dict[str, Any]:
        document = fixture_body(fixture)
        payload = document["payload"]
        type_id, slug, minutes = row.event_type
        host_id, host_email, host_name = row.host
        people = row.seats if row.seats is not None else [row.booker, *row.guests]
        payload.update(
            uid=row.uid,
            bookingId=row.booking_id,
            startTime=row.start.strftime(time_format),
            endTime=row.end.strftime(time_format),
            eventTypeId=type_id,
            type=slug,
            length=minutes,
            seatsPerTimeSlot=SEATS if row.seats is not None else None,
            attendees=[self.attendee(person, guest=person in row.guests) for person in people],
        )
        payload["organizer"].update(id=host_id, email=host_email, name=host_name)
        payload["responses"]["email"]["value"] = self.email(people[0] if people else row.booker)
        if sequence:
            payload.update(iCalUID=row.ical_uid, iCalSequence=row.sequence)
        else:  # reject/confirm payloads carry neither, nor the organizer's id
            for key in ("iCalUID", "iCalSequence"):
                payload.pop(key, None)
            payload["organizer"].pop("id", None)
        return document

    def attendee(self, person: str, *, guest: bool = False) -> dict[str, Any]:
        name = "" if guest else person.split("@")[0].replace(".", " ").title()
        return {"email": self.email(person), "name": name, "timeZone": "America/Chicago", "language": {"locale": "en"}}

    def meeting_ended(self, row: Row) -> dict[str, Any]:
        document = fixture_body("meeting_ended.json")
        host_id, host_email, host_name = row.host
        people = [row.first_seat] if row.seats is not None and row.first_seat else [row.booker, *row.guests]
        document.update(
            id=row.booking_id,
            uid=row.uid,
            userId=host_id,
            userPrimaryEmail=host_email,
            eventTypeId=row.event_type[0],
            startTime=row.start.strftime(MS_Z),
            endTime=row.end.strftime(MS_Z),
            createdAt=_ms(row.created_at),
            updatedAt=_ms(row.updated_at),  # the row as it was when the trigger was scheduled
            iCalUID=row.ical_uid,
            iCalSequence=row.sequence,
            fromReschedule=row.previous.uid if row.previous else None,
            user={"email": host_email, "name": host_name, "timeZone": "America/New_York", "username": "host"},
            attendees=[
                {**self.attendee(p), "id": 90000 + i, "bookingId": row.booking_id} for i, p in enumerate(people)
            ],
        )
        return document


def _uid(seed: str, lineage: int, number: int) -> str:
    return f"{seed}{B58[lineage]}{B58[number // 58]}{B58[number % 58]}"


def _lineage(
    draw: Any, seed: str, index: int, clock: datetime, awaiting_confirmation: bool
) -> list[tuple[datetime, dict[str, Any]]]:
    """One lineage's true history: (when Cal.com sent it, document)."""
    cal = _Calcom(draw)
    numbers = iter(range(58 * 58))

    def tick() -> datetime:
        nonlocal clock
        clock += timedelta(seconds=draw(st.integers(1, 2 * 86400)), milliseconds=draw(st.integers(0, 999)))
        return clock

    def slot() -> datetime:
        return clock.replace(hour=draw(st.integers(8, 17)), minute=0, second=0, microsecond=0) + timedelta(
            days=draw(st.integers(1, 20))
        )

    first = draw(st.sampled_from(["created", "requested", "seated"]))
    uid = _uid(seed, index, next(numbers))
    booker = draw(st.sampled_from(PATIENTS))
    now = tick()
    head = Row(
        uid=uid,
        booking_id=48000 + 100 * index,
        ical_uid=f"{uid}@Cal.com",
        sequence=0,
        start=slot(),
        event_type=draw(st.sampled_from(EVENT_TYPES)),
        host=draw(st.sampled_from(HOSTS)),
        booker=booker,
        guests=(GUEST,) if first == "created" and draw(st.booleans()) else (),
        seats=[booker] if first == "seated" else None,
        status="PENDING" if first == "requested" else "ACCEPTED",
        created_at=now - WRITE_LAG,
        updated_at=now - WRITE_LAG,
        was_accepted=first != "requested",
        first_seat=booker if first == "seated" else None,
    )
    fixture = "booking_requested.json" if first == "requested" else "booking_created.json"
    trigger = "BOOKING_REQUESTED" if first == "requested" else "BOOKING_CREATED"
    document = cal.booking(fixture, head, Z)
    document["triggerEvent"] = trigger
    if head.seats is not None:
        document["payload"]["attendeeSeatId"] = f"seat-{head.uid}-0"
    cal.emit(now, document)
    rows = [head]

    for _ in range(draw(st.integers(0, 7))):
        options = _options(head, rows, awaiting_confirmation)
        if not options:
            break
        action = draw(st.sampled_from(options))
        now = tick()
        if action in ("reschedule", "fork", "reschedule_awaiting_confirmation"):
            previous = head.previous if action == "fork" else head
            assert previous is not None
            new_uid = _uid(seed, index, next(numbers))
            successor = replace(
                previous,
                uid=new_uid,
                booking_id=head.booking_id + 1 + len(rows),
                sequence=previous.sequence + 1,
                start=slot(),
                host=draw(st.sampled_from(HOSTS)),
                status="PENDING" if action == "reschedule_awaiting_confirmation" else "ACCEPTED",
                created_at=now - WRITE_LAG,
                updated_at=now - WRITE_LAG,
                previous=previous,
                ended=False,
                was_accepted=action != "reschedule_awaiting_confirmation",
                reschedule_requested=False,
            )
            if action == "reschedule_awaiting_confirmation":  # the event type requires confirmation
                document = cal.booking("booking_requested.json", successor, Z)
            else:
                document = cal.booking("booking_rescheduled.json", successor, Z)
            document["payload"].update(
                rescheduleUid=previous.uid,
                rescheduleId=previous.booking_id,
                rescheduleStartTime=previous.start.strftime(Z),
                rescheduleEndTime=previous.end.strftime(Z),
            )
            # Clock skew: this reschedule claims to be older than events before it.
            skew = timedelta(hours=draw(st.integers(1, 72))) if draw(st.integers(0, 3)) == 0 else timedelta(0)
            cal.emit(now, document, created_at=now - skew)
            previous.status = "CANCELLED"
            rows.append(successor)
            # After a fork Cal.com holds two accepted bookings; the story goes on with either.
            head = successor if action != "fork" or draw(st.booleans()) else head
        elif action in ("cancel", "request_reschedule"):
            document = cal.booking("booking_cancelled.json", head, OFFSET)
            payload = document["payload"]
            payload["iCalSequence"] = head.sequence + 1  # Cal.com bumps the sequence on cancel
            if action == "request_reschedule":
                del payload["status"]  # the host's "request reschedule" cancel has no status key
                payload["cancellationReason"] = "Please reschedule. The provider is unavailable."
                payload["cancelledBy"] = head.host[1]
            else:
                payload["cancelledBy"] = head.booker
            cal.emit(now, document)
            head.status, head.reschedule_requested = "CANCELLED", action == "request_reschedule"
        elif action in ("confirm", "reject"):
            confirm = action == "confirm"
            fixture = "booking_created_after_confirmation.json" if confirm else "booking_rejected.json"
            cal.emit(now, cal.booking(fixture, head, MS_Z, sequence=False))
            head.status = "ACCEPTED" if confirm else "REJECTED"
            head.was_accepted |= confirm
            head.updated_at = now - WRITE_LAG if confirm else head.updated_at
        elif action == "seat_add":
            assert head.seats is not None
            head.seats.append(draw(st.sampled_from([p for p in PATIENTS if p not in head.seats])))
            document = cal.booking("booking_created.json", head, Z)
            document["payload"]["attendeeSeatId"] = f"seat-{head.uid}-{len(cal.documents)}"
            document["payload"]["responses"]["email"]["value"] = cal.email(head.seats[-1])
            cal.emit(now, document)
        elif action == "seat_cancel":
            assert head.seats is not None
            leaving = draw(st.sampled_from(head.seats))
            seated = replace(head, seats=[leaving])
            document = cal.booking("booking_cancelled.json", seated, OFFSET)
            document["payload"].update(cancellationReason=None, cancelledBy=leaving)
            cal.emit(now, document)
            head.seats.remove(leaving)
            head.status = "ACCEPTED" if head.seats else "CANCELLED"  # nobody left: the booking is off
        elif action == "no_show":
            present = head.seats if head.seats is not None else [head.booker, *head.guests]
            marked = draw(st.lists(st.sampled_from(present), min_size=1, unique=True))
            document = fixture_body("booking_no_show_updated.json")
            document["payload"].update(
                attendees=[{"email": cal.email(p), "noShow": draw(st.booleans())} for p in marked],
                message="No-show status updated for attendees",
                bookingUid=head.uid,
                bookingId=head.booking_id,
            )
            cal.emit(now, document)
        else:  # meeting_ended of the head, or a stale one of a superseded or cancelled booking
            row = head if action == "meeting_ended" else draw(st.sampled_from(_stale_meetings(rows, head)))
            cal.emit(now, cal.meeting_ended(row))
            row.ended = True
    return cal.documents


def _stale_meetings(rows: list[Row], head: Row) -> list[Row]:
    """Accepted bookings that are no longer live (superseded, cancelled, the other side of a fork)."""
    return [r for r in rows if r.was_accepted and not r.ended and (r is not head or r.status == "CANCELLED")]


def _options(head: Row, rows: list[Row], awaiting_confirmation: bool) -> list[str]:
    options: list[str] = []
    if head.status == "PENDING":  # a rebooking awaiting confirmation is only ever confirmed here
        options += ["confirm", "reject", "cancel"] if head.previous is None else ["confirm"]
    elif head.status == "ACCEPTED" and head.ended:  # after the meeting: mark no-shows, ask to rebook
        options += ["no_show"] if head.seats != [] else []
        options += ["request_reschedule"] if head.seats is None else []
    elif head.status == "ACCEPTED" and head.seats is not None:
        options += ["seat_add", "meeting_ended"] if len(head.seats) < SEATS else ["meeting_ended"]
        options += ["seat_cancel", "no_show"] if head.seats else []
    elif head.status == "ACCEPTED":
        options += ["reschedule", "cancel", "request_reschedule", "no_show", "meeting_ended"]
        options += ["reschedule_awaiting_confirmation"] if awaiting_confirmation and head.event_type[0] == 1210 else []
        options += ["fork"] if head.previous is not None else []
    elif head.reschedule_requested:
        options += ["reschedule"]
    if _stale_meetings(rows, head):
        options.append("stale_meeting_ended")
    return options


@st.composite
def true_histories(draw: Any, awaiting_confirmation: bool = True) -> list[dict[str, Any]]:
    """One or two lineages of what Cal.com did, interleaved in Cal.com's chronological order.

    `awaiting_confirmation=False` leaves out rebookings of a requires-confirmation event type
    (BOOKING_REQUESTED with `rescheduleUid`, then a confirm without iCalUID), whose placement the
    spec leaves open.
    """
    seed = "".join(draw(st.lists(st.sampled_from(B58), min_size=19, max_size=19)))
    clock = datetime(2025, 6, 1, 8, tzinfo=UTC) + timedelta(minutes=draw(st.integers(0, 60 * 24 * 30)))
    lineages = range(draw(st.integers(1, 2)))
    timed = [item for i in lineages for item in _lineage(draw, seed, i, clock, awaiting_confirmation)]
    return [document for _, document in sorted(timed, key=lambda item: item[0])]


def _is_link(document: dict[str, Any]) -> bool:
    return bool(document.get("payload", {}).get("rescheduleUid"))


def _has_successor(history: list[dict[str, Any]], index: int) -> bool:
    uid = history[index]["payload"]["uid"]
    return any(d.get("payload", {}).get("rescheduleUid") == uid for d in history)


@st.composite
def histories(draw: Any, awaiting_confirmation: bool = True) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(true history in Cal.com's order, delivered stream): lost, duplicated and reordered deliveries."""
    history = draw(true_histories(awaiting_confirmation))
    lost = set(draw(st.sets(st.integers(0, len(history) - 1), max_size=len(history) // 3)))
    links = [i for i, document in enumerate(history) if _is_link(document) and _has_successor(history, i)]
    if links and draw(st.booleans()):  # a lost reschedule link: its successor names a uid nobody saw
        lost.add(draw(st.sampled_from(links)))
    stream = [document for i, document in enumerate(history) if i not in lost]
    if stream:
        stream += draw(st.lists(st.sampled_from(stream), max_size=3))  # duplicates, placed anywhere below
    return history, draw(st.permutations(stream))


def delivered_in_order(history: list[dict[str, Any]], stream: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events the bridge received, once each, in Cal.com's order: what the model may know."""
    received = {body_bytes(document) for document in stream}
    return [document for document in history if body_bytes(document) in received]


def describe(documents: list[dict[str, Any]]) -> str:
    """One line per document (trigger, uid, Cal.com time, sequence, people): for failure reports."""
    lines = []
    for document in documents:
        flat = "payload" not in document
        body = document if flat else document["payload"]
        uid = body.get("uid") or body.get("bookingUid")
        at = document["updatedAt"] if flat else document["createdAt"]
        people = ",".join(
            f"{a['email'].split('@')[0].lower()}{'' if 'noShow' not in a else ('=ns' if a['noShow'] else '=ok')}"
            for a in body.get("attendees") or []
        )
        extra = []
        if body.get("rescheduleUid"):
            extra.append(f"from={body['rescheduleUid'][-3:]}")
        if body.get("seatsPerTimeSlot"):
            extra.append("seated")
        if document["triggerEvent"] == "BOOKING_CANCELLED" and "status" not in body:
            extra.append("request-reschedule")
        if body.get("startTime"):
            extra.append(f"slot={body['startTime'][:16]}")
        if "organizer" in body or "userId" in body:
            extra.append(f"host={(body.get('organizer') or {}).get('email', body.get('userPrimaryEmail', ''))[:6]}")
        lines.append(
            f"{document['triggerEvent']:<24} uid=..{str(uid)[-3:]} at={at} seq={body.get('iCalSequence')} "
            f"[{people}] {' '.join(extra)}"
        )
    return "\n".join(lines)


def shapes(history: list[dict[str, Any]], stream: list[dict[str, Any]]) -> list[str]:
    """Labels of the nasty shapes a case holds (hypothesis statistics show how often each is generated)."""
    received = {body_bytes(document) for document in stream}
    payloads = [d.get("payload", d) for d in history]
    reschedules = [p for p in payloads if p.get("rescheduleUid")]
    sources = [p["rescheduleUid"] for p in reschedules]
    labels = {d["triggerEvent"] for d in history}
    labels |= {"fork"} if len(sources) != len(set(sources)) else set()
    labels |= {"two lineages"} if len({p.get("iCalUID") for p in payloads if p.get("iCalUID")}) > 1 else set()
    labels |= {"seated"} if any(p.get("seatsPerTimeSlot") for p in payloads) else set()
    labels |= {"lost event"} if len(received) < len(history) else set()
    labels |= {"duplicate"} if len(stream) > len(received) else set()
    lost_links = [d for d in history if _is_link(d) and body_bytes(d) not in received]
    labels |= {"lost reschedule link"} if lost_links else set()
    times = [d["createdAt"] for d in history if "payload" in d]
    labels |= {"createdAt out of order"} if times != sorted(times) else set()
    labels |= {"request reschedule"} if any(_is_request_reschedule(d) for d in history) else set()
    labels |= {"rebooking awaiting confirmation"} if any(p.get("status") == "PENDING" for p in reschedules) else set()
    return sorted(labels)


def _is_request_reschedule(document: dict[str, Any]) -> bool:
    return document["triggerEvent"] == "BOOKING_CANCELLED" and "status" not in document["payload"]
