"""The local stack's snapshot (`calehr dev --state-dir`) keeps DynamoDB items exactly, binary values included
(the lineage state is stored zlib-compressed), through a JSON file."""

from __future__ import annotations

import json
import zlib

from devstack.snapshot import as_json, from_json


def test_given_items_with_binary_values_then_they_survive_the_json_file_unchanged() -> None:
    item = {
        "pk": {"S": "lineage#L"},
        "version": {"N": "3"},
        "state_z": {"B": zlib.compress(b'{"lineage": "L"}')},
        "nested": {"M": {"raw": {"B": b"\x00\xff"}, "list": {"L": [{"B": b"\x01"}, {"S": "x"}]}}},
        "set": {"BS": [b"\x02", b"\x03"]},
        "marks": {"SS": ["a", "b"]},
    }
    written = json.dumps(as_json(item))  # what the snapshot file holds: text only
    assert from_json(json.loads(written)) == item
