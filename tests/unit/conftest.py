"""Fixtures for the unit tests: Cal.com webhook bodies from tests/fixtures/calcom, compact-encoded."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

FIXTURES_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "calcom"
_CACHE: dict[str, dict[str, Any]] = {}


def _load(name: str) -> dict[str, Any]:
    """A fresh (deep-copied) dict of one fixture body, so tests can edit it freely."""
    if name not in _CACHE:
        _CACHE[name] = json.loads((FIXTURES_DIR / name).read_text(encoding="utf-8"))
    return copy.deepcopy(_CACHE[name])


def _compact(document: Any) -> bytes:
    """The exact bytes Cal.com signs: compact JSON, UTF-8, non-ASCII kept."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES_DIR


@pytest.fixture(scope="session")
def load_fixture() -> Callable[[str], dict[str, Any]]:
    return _load


@pytest.fixture(scope="session")
def compact() -> Callable[[Any], bytes]:
    return _compact
