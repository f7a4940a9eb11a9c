"""The optimistic write every versioned item uses: write version N+1 only over version N (or over nothing)."""

from __future__ import annotations

from typing import Any


def versioned(expected: int) -> dict[str, Any]:
    """Condition arguments for a write over version `expected` of an item; 0 = the item must not exist yet.

    The new version is the caller's to set; the condition names only `:expected` (merge other values into
    `ExpressionAttributeValues` when the request has its own).
    """
    if expected == 0:
        return {"ConditionExpression": "attribute_not_exists(version)"}
    return {
        "ConditionExpression": "version = :expected",
        "ExpressionAttributeValues": {":expected": {"N": str(expected)}},
    }
