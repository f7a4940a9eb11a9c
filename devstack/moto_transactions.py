"""DynamoDB's write atomicity for the local moto server, and a `TransactWriteItems` in O(items).

moto 5 makes every transaction deep-copy each table it touches (to roll back on failure), so a table
that grows during a test run makes every commit slower and the process larger (the sync commits its
lineage state, audit record and aliases in one transaction per message). DynamoDB itself checks every
condition first and then applies every write; this does the same, remembering only the items it is
about to change so that a write failing half way (a validation error) is undone item by item.

moto also serves requests on several threads without a lock, so a conditional write's check and its
write can interleave with another request's; DynamoDB makes each request atomic. `install` puts one
lock around moto's DynamoDB writes, so concurrent workers see DynamoDB's semantics (the lineage lease
depends on them).

Installed by `devstack.aws.LocalAws.start` on the moto server that runs in this process; the Lambda
code never sees it (it talks to DynamoDB over HTTP either way).
"""

from __future__ import annotations

import copy
import functools
import threading
from collections.abc import Callable
from typing import Any

from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.exceptions import (
    MockValidationException,
    MultipleTransactionsException,
    TooManyTransactionsException,
    TransactionCanceledException,
    TransactWriteSingleOpException,
)
from moto.dynamodb.models import DynamoDBBackend

_OPERATIONS = frozenset({"ConditionCheck", "Put", "Delete", "Update"})


def _key_of(backend: DynamoDBBackend, op_type: str, op: dict[str, Any]) -> dict[str, Any]:
    if op_type != "Put":
        return dict(op["Key"])
    table = backend.get_table(op["TableName"])
    key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
    if table.range_key_attr is not None:
        key[table.range_key_attr] = op["Item"][table.range_key_attr]
    return key


Operation = tuple[str, dict[str, Any], dict[str, Any]]


class _ConditionFailedError(Exception):
    def __init__(self, old: dict[str, Any] | None) -> None:
        super().__init__("The conditional request failed")
        self.old = old


def _check(self: DynamoDBBackend, op_type: str, op: dict[str, Any], seen: set[tuple[str, str]]) -> Operation:
    """Phase 1 for one item: raises `_ConditionFailedError` (with the old item if asked) when its condition
    does not hold against the item as it is now."""
    if op_type not in _OPERATIONS:
        raise ValueError("Unsupported transaction operation")
    key = _key_of(self, op_type, op)
    marker = (str(op["TableName"]), str(dict(sorted(key.items()))))
    if marker in seen:
        raise MultipleTransactionsException()
    seen.add(marker)
    condition = op.get("ConditionExpression")
    if condition is not None:
        current = self.get_item(op["TableName"], key)
        check = get_filter_expression(
            condition, op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
        )
        if not check.expr(current):
            old = current.to_json()["Attributes"] if current and op.get("ReturnValuesOnConditionCheckFailure") else None
            raise _ConditionFailedError(old)
    return op_type, op, key


def _write(self: DynamoDBBackend, op_type: str, op: dict[str, Any], key: dict[str, Any]) -> None:
    if op_type == "Put":
        self.put_item(op["TableName"], op["Item"])
    elif op_type == "Delete":
        self.delete_item(op["TableName"], key)
    elif op_type == "Update":
        self.update_item(
            op["TableName"],
            key,
            update_expression=op["UpdateExpression"],
            expression_attribute_names=op.get("ExpressionAttributeNames") or {},
            expression_attribute_values=op.get("ExpressionAttributeValues") or {},
        )


def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    operations: list[Operation] = []
    seen: set[tuple[str, str]] = set()
    errors: list[Any] = []
    for item in transact_items:  # 1. every condition, against the items as they are now
        if len(item) > 1:
            raise TransactWriteSingleOpException
        op_type, op = next(iter(item.items()))
        try:
            operations.append(_check(self, op_type, op, seen))
            errors.append((None, None, None))
        except (MultipleTransactionsException, MockValidationException):
            raise
        except _ConditionFailedError as exc:
            errors.append(("ConditionalCheckFailed", str(exc), exc.old))
        except Exception as exc:  # noqa: BLE001 - reported per item, as DynamoDB does
            errors.append((type(exc).__name__, str(exc), None))
    if any(code is not None for code, _, _ in errors):
        raise TransactionCanceledException(errors)
    before = [(op["TableName"], key, copy.deepcopy(self.get_item(op["TableName"], key))) for _, op, key in operations]
    try:  # 2. every write (the conditions hold: the write lock keeps other requests out)
        for op_type, op, key in operations:
            _write(self, op_type, op, key)
    except Exception:
        for table_name, key, old in before:  # undo item by item
            if old is None:
                self.delete_item(table_name, key)
            else:
                self.put_item(table_name, old.to_json()["Attributes"])
        raise


_WRITE_LOCK = threading.RLock()
_WRITES = ("put_item", "update_item", "delete_item", "batch_write_item", "transact_write_items")


def _atomic(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with _WRITE_LOCK:
            return method(*args, **kwargs)

    locked.__dict__["_calehr_atomic"] = True
    return locked


def install() -> None:
    """Make moto's DynamoDB writes atomic per request, with the O(items) transaction (idempotent)."""
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    for name in _WRITES:
        method = getattr(DynamoDBBackend, name)
        if not getattr(method, "_calehr_atomic", False):
            setattr(DynamoDBBackend, name, _atomic(method))
