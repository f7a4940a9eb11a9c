"""`calehr reconcile` on demand against the local Cal.com API stub and moto over sockets."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cli.app import main
from devstack.calcom_api_stub import CalcomApiStub
from shared.stores.cursors import CURSOR_PK

pytestmark = pytest.mark.integration


@pytest.fixture
def reconcile_argv(clean_bridge: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.delenv("CALEHR_STACK", raising=False)
    monkeypatch.setenv("CALEHR_STATE_TABLE", clean_bridge.state_table)
    monkeypatch.setenv("CALEHR_QUEUE_URL", clean_bridge.queue_url)
    return ["--endpoint-url", clean_bridge.endpoint, "--region", "us-east-1", "--since", "2025-06-01T00:00:00Z"]


def test_given_a_missed_booking_then_dry_run_queues_nothing_and_the_run_queues_it(
    clean_bridge: Any,
    pipeline: Any,
    reconcile_argv: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with CalcomApiStub(fixtures=["bookings_missed_created.json"]) as stub:
        monkeypatch.setenv("CALCOM_API_KEY", stub.api_key)
        argv = ["reconcile", *reconcile_argv, "--api-url", stub.base_url, "--max-rps", "50", "--json"]
        capsys.readouterr()
        assert main([*argv, "--dry-run"]) == 0
        dry = json.loads(capsys.readouterr().out)
        assert (dry["checked"], dry["enqueued"], dry["dry_run"]) == (1, 1, True)
        assert [e["trigger"] for e in dry["events"]] == ["BOOKING_CREATED"]
        assert pipeline.queue_depth() == 0

        assert main(argv) == 0
        done = json.loads(capsys.readouterr().out)
        assert (done["checked"], done["enqueued"], done["complete"]) == (1, 1, True)
        assert pipeline.queue_depth() == 1
        assert "samira" not in json.dumps(done).lower()  # counts and hashes only

        assert main(argv[:-1]) == 0  # the table for people
        table = capsys.readouterr().out
        assert "bookings checked" in table and "events enqueued" in table
    # The scheduled run's cursor is neither read nor written by an on-demand run.
    item = clean_bridge.client("dynamodb").get_item(TableName=clean_bridge.state_table, Key={"pk": {"S": CURSOR_PK}})
    assert "Item" not in item


def test_given_a_wrong_api_key_then_one_line_and_exit_1(
    reconcile_argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with CalcomApiStub(fixtures=["bookings_missed_created.json"]) as stub:
        monkeypatch.setenv("CALCOM_API_KEY", "cal_test_wrong")
        assert main(["reconcile", *reconcile_argv, "--api-url", stub.base_url]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "401" in err and "cal_test_wrong" not in err


def test_given_a_bad_since_then_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reconcile", "--since", "soon"]) == 2
    assert "--since must be a duration" in capsys.readouterr().err
