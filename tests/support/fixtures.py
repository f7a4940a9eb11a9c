"""Recorded Cal.com webhook bodies (tests/fixtures/calcom) and how the tests encode and read them."""

from __future__ import annotations

import json
import zlib
from typing import Any

from tests.support.paths import FIXTURES as FIXTURES_DIR

FIXTURES = FIXTURES_DIR / "calcom"


def fixture_document(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def readable_items(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """DynamoDB items with the lineage state (`state_z`, zlib-compressed JSON) inflated to text, so a search
    for PHI in a table sees what the state holds."""
    return [
        {**item, "state_z": {"S": zlib.decompress(item["state_z"]["B"]).decode("utf-8")}} if "state_z" in item else item
        for item in items
    ]


def compact(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
