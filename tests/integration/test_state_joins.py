"""The state store's joins against DynamoDB (moto server): each is one atomic write-and-read on one item.

A booking claims its uid and reads the no-show marks kept under it; a no-show adds its marks and reads
the claim; a booking links a person and reads the `has_forms` flag; a form sets the flag and reads the
person's lineages. Whoever comes second sees the first (shared/stores/lineages.py).
"""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture
def store(clean_bridge: Any) -> Any:
    from shared.stores.lineages import LineageStateStore

    return LineageStateStore(clean_bridge.state_table, clean_bridge.client("dynamodb"))


def test_given_a_claimed_uid_then_the_first_claim_wins_and_a_later_no_show_finds_it(store: Any) -> None:
    first = store.claim_uid("uid-1", "lineage-A")
    assert (first.lineage, first.marks) == ("lineage-A", [])
    again = store.claim_uid("uid-1", "lineage-B")  # a later event naming another lineage cannot move the uid
    assert again.lineage == "lineage-A"
    assert store.lineage_of("uid-1") == "lineage-A"
    assert store.add_pending_marks("uid-1", ['{"mark": 1}']) == "lineage-A"


def test_given_no_show_marks_before_the_booking_then_the_claim_reads_them(store: Any) -> None:
    assert store.add_pending_marks("uid-2", ['{"mark": 1}']) is None
    assert store.add_pending_marks("uid-2", ['{"mark": 2}', '{"mark": 1}']) is None
    assert store.lineage_of("uid-2") is None  # marks alone are no claim
    claim = store.claim_uid("uid-2", "lineage-C")
    assert claim.lineage == "lineage-C"
    assert claim.marks == ['{"mark": 1}', '{"mark": 2}']


def test_given_a_form_and_a_booking_of_one_person_then_whoever_is_second_sees_the_first(store: Any) -> None:
    # booking first: no flag yet; the form then reads the booking's lineage
    assert store.link_person("person-1", "lineage-D") is False
    store.add_form("person-1", '{"form": 1}')
    assert store.announce_forms("person-1") == ["lineage-D"]
    # form first: the next booking of the person reads the flag, then the facts
    store.add_form("person-2", '{"form": 2}')
    assert store.announce_forms("person-2") == []
    assert store.link_person("person-2", "lineage-E") is True
    assert store.forms_of("person-2") == ['{"form": 2}']
    assert store.lineages_of_person("person-2") == ["lineage-E"]


def test_given_a_state_then_it_is_stored_compressed_and_a_text_state_of_an_older_release_still_loads(
    store: Any, clean_bridge: Any
) -> None:
    from shared.domain.lineage_state import LineageState

    ddb = clean_bridge.client("dynamodb")
    state, lease = store.acquire("lineage-F")
    store.commit(state.model_copy(update={"booked_at": None, "seen": ["a" * 64] * 3}), lease)
    item = ddb.get_item(TableName=clean_bridge.state_table, Key={"pk": {"S": "lineage#lineage-F"}})["Item"]
    assert "state" not in item and isinstance(item["state_z"]["B"], bytes)
    assert store.load("lineage-F").seen == ["a" * 64] * 3
    older = LineageState(lineage="lineage-G", seen=["b" * 64]).model_dump_json(exclude={"version"})
    ddb.put_item(
        TableName=clean_bridge.state_table,
        Item={"pk": {"S": "lineage#lineage-G"}, "version": {"N": "4"}, "state": {"S": older}, "fence": {"N": "2"}},
    )
    loaded, lease = store.acquire("lineage-G")
    assert (loaded.seen, loaded.version) == (["b" * 64], 4)
    store.commit(loaded, lease)  # the first commit rewrites it compressed
    item = ddb.get_item(TableName=clean_bridge.state_table, Key={"pk": {"S": "lineage#lineage-G"}})["Item"]
    assert "state" not in item and store.load("lineage-G").version == 5
