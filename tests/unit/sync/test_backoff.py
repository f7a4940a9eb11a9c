"""Retry backoff of the sync function: exponential by attempt, honours Retry-After, capped at 15 minutes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from shared.contracts.queue import BACKOFF_BASE_SECONDS as BASE_BACKOFF_SECONDS
from shared.contracts.queue import BACKOFF_CAP_SECONDS as MAX_BACKOFF_SECONDS
from shared.sync.message import backoff_seconds
from tests.support.paths import REPO_ROOT

ROOT = REPO_ROOT


def test_given_no_aws_environment_when_importing_the_sync_handler_then_it_imports() -> None:
    # A fresh interpreter without any AWS or bridge settings: importing must not read settings or call AWS.
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), "HOME": os.environ.get("HOME", "/tmp")}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import functions.sync.handler, shared.sync.message as h; print(h.backoff_seconds(2, None))",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "20"


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(1, 10), (2, 20), (3, 40), (4, 80), (5, 160), (6, 320), (7, 640), (8, 900), (9, 900), (50, 900)],
)
def test_given_successive_attempts_when_backing_off_then_the_delay_doubles_until_the_cap(
    attempt: int, expected: int
) -> None:
    assert backoff_seconds(attempt, None) == expected


@pytest.mark.parametrize("attempt", [0, -3])
def test_given_a_missing_or_odd_receive_count_when_backing_off_then_the_base_delay_is_used(attempt: int) -> None:
    assert backoff_seconds(attempt, None) == BASE_BACKOFF_SECONDS


def test_given_attempts_when_backing_off_then_the_delay_never_decreases() -> None:
    delays = [backoff_seconds(n, None) for n in range(1, 30)]
    assert delays == sorted(delays)
    assert all(d <= MAX_BACKOFF_SECONDS for d in delays)


@pytest.mark.parametrize(
    ("attempt", "retry_after", "expected"),
    [
        (1, 120, 120),
        (1, 30.9, 30),
        (3, 5, 40),
        (3, 0, 40),
        (5, 161, 161),
        (1, 86_400, 900),
        (8, 1_000, 900),
    ],
)
def test_given_a_retry_after_when_backing_off_then_the_larger_delay_wins_within_the_cap(
    attempt: int, retry_after: float, expected: int
) -> None:
    assert backoff_seconds(attempt, retry_after) == expected


def test_given_a_huge_attempt_number_when_backing_off_then_it_is_capped_without_overflow() -> None:
    assert backoff_seconds(10_000, None) == MAX_BACKOFF_SECONDS


def test_given_any_inputs_when_backing_off_then_the_result_is_an_int_usable_as_sqs_visibility() -> None:
    for attempt in range(0, 12):
        for retry_after in (None, 0.5, 7.0, 1e9):
            delay = backoff_seconds(attempt, retry_after)
            assert isinstance(delay, int)
            assert 0 <= delay <= 43_200
