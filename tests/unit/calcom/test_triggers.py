"""A trigger's meaning has one home: `shared.calcom.triggers.MEANINGS`. Every trigger has its row, the
handling is the bridge's (which are applied, recorded, ignored), and no other module of the Lambda layer
decides anything by naming a trigger."""

from __future__ import annotations

import re

from shared.calcom.models import BOOKING_TRIGGERS, FORM_TRIGGERS, IGNORED_TRIGGERS
from shared.calcom.triggers import MEANINGS, Trigger
from tests.support.paths import REPO_ROOT

ROOT = REPO_ROOT
#: The one module that writes triggers rather than reading them: reconcile's synthetic webhooks.
PRODUCERS = {"shared/calcom/synthetic.py"}


def test_every_trigger_has_exactly_one_row_with_a_reason() -> None:
    assert set(MEANINGS) == set(Trigger)
    assert all(row.why for row in MEANINGS.values())


def test_the_rows_say_which_triggers_are_applied_recorded_and_ignored() -> None:
    assert {
        Trigger.BOOKING_CREATED,
        Trigger.BOOKING_RESCHEDULED,
        Trigger.BOOKING_REQUESTED,
        Trigger.BOOKING_CANCELLED,
        Trigger.BOOKING_REJECTED,
        Trigger.BOOKING_NO_SHOW_UPDATED,
        Trigger.MEETING_ENDED,
    } == BOOKING_TRIGGERS
    assert {Trigger.FORM_SUBMITTED, Trigger.FORM_SUBMITTED_NO_EVENT} == FORM_TRIGGERS
    assert set(Trigger) - BOOKING_TRIGGERS - FORM_TRIGGERS == IGNORED_TRIGGERS
    # what is read of an applied or recorded trigger; an ignored one is never read
    for trigger, row in MEANINGS.items():
        assert (row.payload is None) == (row.handling == "ignore"), trigger
        assert row.payload != "form" or row.handling == "record", trigger


def test_the_status_facts_of_the_booking_triggers() -> None:
    facts = {trigger: row.status for trigger, row in MEANINGS.items() if row.status}
    assert facts == {
        Trigger.BOOKING_CREATED: "accepted",
        Trigger.BOOKING_RESCHEDULED: "accepted",
        Trigger.BOOKING_REQUESTED: "requested",
        Trigger.BOOKING_CANCELLED: "cancelled",
        Trigger.BOOKING_REJECTED: "rejected",
        Trigger.MEETING_ENDED: "ended",
    }
    assert {t for t, row in MEANINGS.items() if row.books} == {
        Trigger.BOOKING_CREATED,
        Trigger.BOOKING_REQUESTED,
        Trigger.BOOKING_RESCHEDULED,
    }
    assert {t for t, row in MEANINGS.items() if row.supersedes} == {Trigger.BOOKING_RESCHEDULED}
    authority = {t: row.detail_authority for t, row in MEANINGS.items() if row.payload == "booking"}
    assert authority[Trigger.BOOKING_CANCELLED] < authority[Trigger.MEETING_ENDED] < authority[Trigger.BOOKING_CREATED]


def test_no_other_module_of_the_layer_decides_by_naming_a_trigger() -> None:
    named: dict[str, list[str]] = {}
    for path in sorted((ROOT / "shared").rglob("*.py")):
        relative = str(path.relative_to(ROOT))
        if relative in {"shared/calcom/triggers.py", *PRODUCERS}:
            continue
        found = re.findall(r"\bTrigger\.([A-Z_]+)", path.read_text(encoding="utf-8"))
        if found:
            named[relative] = found
    assert named == {}
