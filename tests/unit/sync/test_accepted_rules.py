"""Accepting a booking rule on a retry: what the CLI puts on the message and what the sync takes from it."""

from __future__ import annotations

from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from cli.errors import CliError
from cli.ops import ACCEPTED_RULES_ATTRIBUTE, _accepted
from shared.sync import message as sync_messages


def _record(attributes: dict[str, Any]) -> SQSRecord:
    return SQSRecord(
        {
            "messageId": "m-1",
            "receiptHandle": "r",
            "body": "{}",
            "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1717236000000"},
            "messageAttributes": attributes,
        }
    )


def test_given_the_attribute_the_cli_sets_then_the_sync_accepts_only_rule_names() -> None:
    delivery = sync_messages.delivery_of(
        _record(
            {
                "source": {"stringValue": "operator-retry", "dataType": "String"},
                ACCEPTED_RULES_ATTRIBUTE: {"stringValue": "min_duration,lead_time,not-a-rule", "dataType": "String"},
            }
        )
    )
    assert delivery.accepted_rules == frozenset({"min_duration", "lead_time"})
    assert delivery.source_system == "operator-retry"
    assert sync_messages.delivery_of(_record({})).accepted_rules == frozenset()  # a webhook accepts nothing


def test_given_a_retry_with_accepted_rules_then_only_an_item_a_rule_parked_takes_them() -> None:
    parked = {"pk": "abc", "reason": "rule:min_duration"}
    assert _accepted(parked, "abc", ("min_duration", "lead_time", "min_duration")) == ("lead_time", "min_duration")
    assert _accepted({"pk": "x", "reason": "ambiguous_patient"}, "x", ()) == ()
    with pytest.raises(CliError, match="was not parked by a booking rule"):
        _accepted({"pk": "x", "reason": "ambiguous_patient"}, "x", ("min_duration",))
    with pytest.raises(CliError, match="unknown booking rule"):
        _accepted(parked, "abc", ("shortest_visit",))
