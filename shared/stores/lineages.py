"""Lineage state in DynamoDB: a per-lineage lease with a fencing token, plus the uid → lineage alias index.

Items (one table, partition key `pk`):
* `lineage#<key>`: `version` (number), `state_z` (JSON of `LineageState`, no PHI, zlib-compressed: every
  write of the item - the lease too - is billed per KB of the whole item, and a typical state compresses
  from ~2 KB to under 1), `fence` (number, grows on every lease), `updated_at`, and while a worker applies
  the lineage `lease_owner` / `lease_until_ms`; items written before compression hold `state` (text);
* `uid#<booking uid>`: `lineage` - written once (the first claim wins), so any later event of that uid
  finds its lineage; `marks` - PHI-free no-show marks that arrived before their booking;
* `person#<person key>`: `lineages` - the lineages a person (keyed hash) is a patient on; `has_forms` -
  set once a routing form of the person was stored (a booking reads `intake#` only then);
* `intake#<person key>`: `forms` - that person's routing-form facts (JSON of `FormFact`, no answer
  text), expiring `INTAKE_TTL_DAYS` after the latest submission (`expires_at`, the table's TTL).

**The write protocol** (docs/sync-semantics.md, "Write protocol"): a worker *acquires* the lineage (one
conditional `UpdateItem` that takes the lease, bumps the fence and returns the state), writes the EHR with
the fence in the Appointment's ownership marker, then *commits* (one `TransactWriteItems`: the new state,
conditional on still holding the lease, the lease released, and the audit record).
Only one worker applies a lineage at a time; a worker whose lease expired can neither commit nor, once a
newer holder wrote the EHR, write it (its fence is older than the marker's).

Joins with what arrives outside a lineage's own events are atomic on one item: a booking *claims* its
uid and reads the no-show marks kept under it in one `UpdateItem`, a no-show adds its marks and reads
the claim in one; a booking adds its lineage to `person#` and reads the `has_forms` flag in one, a form
(after storing its facts in `intake#`) sets the flag and reads the lineages in one. Of two racing
workers the later update always sees the earlier, so no join is missed (docs/sync-semantics.md), and
the common case (no marks, no forms) costs one round trip per join, not two.
"""

from __future__ import annotations

import time
import uuid
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from shared.contracts.tables import PERSON_PREFIX, UID_ALIAS_PREFIX
from shared.domain.lineage_state import LineageState
from shared.stores.versioned import versioned

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


INTAKE_TTL_DAYS = 90
#: A lease outlives the sync function's timeout (the infra sets it so): a live worker never loses its lease.
DEFAULT_LEASE_SECONDS = 120.0


class StateConflictError(Exception):
    """The worker no longer holds the lineage (its lease expired and another worker took it): decide again."""


class LineageBusyError(StateConflictError):
    """Another worker holds the lineage's lease right now; `retry_after` seconds until it expires at the latest."""

    def __init__(self, lineage_ref: str, retry_after: float) -> None:
        super().__init__(lineage_ref)
        self.retry_after = retry_after


class StateStoreUnavailableError(Exception):
    """DynamoDB failed or throttled: the message is retried later."""


@dataclass(frozen=True, slots=True)
class Lease:
    """The right to apply one lineage until `until_ms`. `fence` orders holders: a later lease has a larger one."""

    lineage: str
    owner: str
    fence: int
    until_ms: int


@dataclass(frozen=True, slots=True)
class UidClaim:
    """The lineage that owns a booking uid, and the no-show marks that arrived for the uid before it."""

    lineage: str
    marks: list[str]


@dataclass(frozen=True, slots=True)
class TransactPut:
    """A conditional put in another table that commits (or not) together with the lineage state."""

    table: str
    item: dict[str, Any]
    condition: str = "attribute_not_exists(pk)"


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class LineageStateStore:
    def __init__(
        self,
        table_name: str,
        client: DynamoDBClient | None = None,
        *,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._table = table_name
        self._client: DynamoDBClient = client or boto3.client("dynamodb")
        self._lease_ms = int(lease_seconds * 1000)
        self._clock = clock

    @staticmethod
    def _key(lineage: str) -> dict[str, Any]:
        return {"pk": {"S": f"lineage#{lineage}"}}

    @staticmethod
    def _state_of(lineage: str, item: dict[str, Any] | None) -> LineageState:
        if item and "state_z" in item:
            state = LineageState.model_validate_json(zlib.decompress(item["state_z"]["B"]))
        elif item and "state" in item:
            state = LineageState.model_validate_json(item["state"]["S"])  # written before compression
        else:
            return LineageState(lineage=lineage)
        return state.model_copy(update={"version": int(item["version"]["N"])})

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # -- reading without a lease (operators, the reconciler) ------------------------------------
    def load(self, lineage: str) -> LineageState:
        """The committed state; never waits for or takes the lease (read-only callers)."""
        try:
            item = self._client.get_item(TableName=self._table, Key=self._key(lineage), ConsistentRead=True).get("Item")
        except (ClientError, BotoCoreError) as exc:
            raise StateStoreUnavailableError(type(exc).__name__) from exc
        return self._state_of(lineage, item)

    def lineages(self, *, changed_since: datetime | None = None) -> list[str]:
        """Every lineage key (optionally committed since a moment), for drift checks. A scan: operator use only."""
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "FilterExpression": "begins_with(pk, :prefix)",
            "ExpressionAttributeValues": {":prefix": {"S": "lineage#"}},
            "ProjectionExpression": "pk, updated_at",
            "Select": "SPECIFIC_ATTRIBUTES",  # all an operator role may read this way (infra/constructs/operators.py)
        }
        if changed_since is not None:
            kwargs["FilterExpression"] += " AND updated_at >= :since"
            kwargs["ExpressionAttributeValues"][":since"] = {"S": changed_since.isoformat(timespec="seconds")}
        found: list[str] = []
        try:
            while True:
                page = self._client.scan(**kwargs)
                found.extend(item["pk"]["S"].removeprefix("lineage#") for item in page.get("Items", []))
                if "LastEvaluatedKey" not in page:
                    return sorted(found)
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        except (ClientError, BotoCoreError) as exc:
            raise StateStoreUnavailableError(type(exc).__name__) from exc

    # -- the lease -----------------------------------------------------------------------------
    def acquire(self, lineage: str) -> tuple[LineageState, Lease]:
        """Take the lineage's lease (a new, larger fence) and read its state, in one round trip.

        Raises `LineageBusyError` while another worker's lease is live.
        """
        now = self._now_ms()
        owner = uuid.uuid4().hex
        until = now + self._lease_ms
        try:
            item = self._client.update_item(
                TableName=self._table,
                Key=self._key(lineage),
                UpdateExpression="SET lease_owner = :owner, lease_until_ms = :until ADD fence :one",
                ConditionExpression="attribute_not_exists(lease_owner) OR lease_until_ms < :now",
                ExpressionAttributeValues={
                    ":owner": {"S": owner},
                    ":until": {"N": str(until)},
                    ":one": {"N": "1"},
                    ":now": {"N": str(now)},
                },
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )["Attributes"]
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                held: Any = exc.response.get("Item") or {}  # the item as it was: whose lease, until when
                held_until = int(held.get("lease_until_ms", {}).get("N", str(until)))
                raise LineageBusyError("lineage leased by another worker", max(0.0, (held_until - now) / 1000)) from exc
            raise StateStoreUnavailableError(type(exc).__name__) from exc
        except BotoCoreError as exc:
            raise StateStoreUnavailableError(type(exc).__name__) from exc
        lease = Lease(lineage=lineage, owner=owner, fence=int(item["fence"]["N"]), until_ms=until)
        return self._state_of(lineage, item), lease

    def holds(self, lease: Lease) -> bool:
        """Whether `lease` is still the lineage's live lease (a consistent read)."""
        try:
            item = self._client.get_item(
                TableName=self._table,
                Key=self._key(lease.lineage),
                ConsistentRead=True,
                ProjectionExpression="lease_owner, lease_until_ms",
            ).get("Item")
        except (ClientError, BotoCoreError) as exc:
            raise StateStoreUnavailableError(type(exc).__name__) from exc
        if not item or item.get("lease_owner", {}).get("S") != lease.owner:
            return False
        return int(item["lease_until_ms"]["N"]) >= self._now_ms()

    def raise_fence(self, lease: Lease, at_least: int) -> Lease:
        """Move the lineage's fence past one found in the EHR (a state restored from a backup starts lower)."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._key(lease.lineage),
                UpdateExpression="SET fence = :fence",
                ConditionExpression="lease_owner = :owner",
                ExpressionAttributeValues={":fence": {"N": str(at_least)}, ":owner": {"S": lease.owner}},
            )
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                raise StateConflictError("lease lost") from exc
            raise StateStoreUnavailableError(type(exc).__name__) from exc
        except BotoCoreError as exc:
            raise StateStoreUnavailableError(type(exc).__name__) from exc
        return Lease(lineage=lease.lineage, owner=lease.owner, fence=at_least, until_ms=lease.until_ms)

    def release(self, lease: Lease) -> None:
        """Give the lease back without committing (best effort: an unreleased lease simply expires)."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._key(lease.lineage),
                UpdateExpression="REMOVE lease_owner, lease_until_ms",
                ConditionExpression="lease_owner = :owner",
                ExpressionAttributeValues={":owner": {"S": lease.owner}},
            )
        except (ClientError, BotoCoreError):
            return

    def commit(
        self,
        state: LineageState,
        lease: Lease,
        *,
        also: Sequence[TransactPut] = (),
    ) -> LineageState:
        """Store `state`, release the lease and write `also` (the audit record) - all or nothing. The state's
        uids were claimed for the lineage before (`claim_uid`), so the commit writes no alias.

        Raises `StateConflictError` when the lease is no longer this worker's (nothing is written then).
        """
        new_version = state.version + 1
        stored = state.model_copy(update={"version": new_version})
        version = versioned(state.version)  # and only while this worker still holds the lease
        condition = "lease_owner = :owner AND " + version["ConditionExpression"]
        values: dict[str, Any] = {
            ":owner": {"S": lease.owner},
            ":version": {"N": str(new_version)},
            ":state": {"B": encode_state(stored)},
            ":at": {"S": datetime.fromtimestamp(self._clock(), UTC).isoformat(timespec="seconds")},
            **version.get("ExpressionAttributeValues", {}),
        }
        items: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self._table,
                    "Key": self._key(state.lineage),
                    "UpdateExpression": "SET version = :version, state_z = :state, updated_at = :at "
                    "REMOVE lease_owner, lease_until_ms, #state",
                    "ConditionExpression": condition,
                    "ExpressionAttributeNames": {"#state": "state"},
                    "ExpressionAttributeValues": values,
                }
            },
            *(
                {"Put": {"TableName": put.table, "Item": put.item, "ConditionExpression": put.condition}}
                for put in also
            ),
        ]
        try:
            self._client.transact_write_items(TransactItems=items)  # type: ignore[arg-type]
        except ClientError as exc:
            reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
            if _code(exc) == "TransactionCanceledException" and reasons[:1] == ["ConditionalCheckFailed"]:
                raise StateConflictError("lease lost before the commit") from exc
            raise StateStoreUnavailableError(type(exc).__name__) from exc
        except BotoCoreError as exc:
            raise StateStoreUnavailableError(type(exc).__name__) from exc
        return stored

    def lineage_of(self, uid: str) -> str | None:
        """The lineage a booking uid belongs to (None while no lineage has claimed it)."""
        try:
            item = self._client.get_item(
                TableName=self._table,
                Key={"pk": {"S": f"{UID_ALIAS_PREFIX}{uid}"}},
                ConsistentRead=True,
                ProjectionExpression="lineage",
            ).get("Item")
        except (ClientError, BotoCoreError) as exc:
            raise StateStoreUnavailableError(type(exc).__name__) from exc
        return item["lineage"]["S"] if item and "lineage" in item else None

    def _update_returning(self, key: str, update: str, values: dict[str, Any]) -> dict[str, Any]:
        """One `UpdateItem` that returns the item as it is after the update (a write and a read in one
        atomic step: what the "write our side, read the other's" joins rely on)."""
        try:
            return self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": key}},
                UpdateExpression=update,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            ).get("Attributes", {})
        except (ClientError, BotoCoreError) as exc:
            raise StateStoreUnavailableError(type(exc).__name__) from exc

    def claim_uid(self, uid: str, lineage: str) -> UidClaim:
        """Link `uid` to `lineage` unless a lineage claimed it first, and read what waits under the uid, in
        one round trip: the lineage that owns the uid (the earlier claim wins) and its no-show marks."""
        item = self._update_returning(
            f"{UID_ALIAS_PREFIX}{uid}", "SET lineage = if_not_exists(lineage, :lineage)", {":lineage": {"S": lineage}}
        )
        return UidClaim(lineage=item["lineage"]["S"], marks=_string_set(item, "marks"))

    # -- no-show marks that arrived before their booking ------------------------------------
    def add_pending_marks(self, uid: str, marks_json: list[str]) -> str | None:
        """Keep PHI-free no-show marks under a uid (on its `uid#` item) and return the lineage that has
        claimed the uid, if any - one atomic step, so a booking claiming the uid at the same moment either
        sees the marks or is seen here."""
        item = self._update_returning(f"{UID_ALIAS_PREFIX}{uid}", "ADD marks :marks", {":marks": {"SS": marks_json}})
        return item["lineage"]["S"] if "lineage" in item else None

    # -- routing-form intake: person → lineages, person → form facts ----------------------------
    def link_person(self, person: str, lineage: str) -> bool:
        """Add `lineage` to the person's lineages; True when a routing form of the person was announced
        (then `forms_of` has something to read; without the flag the read is skipped)."""
        item = self._update_returning(
            f"{PERSON_PREFIX}{person}", "ADD lineages :lineage", {":lineage": {"SS": [lineage]}}
        )
        return item.get("has_forms", {}).get("BOOL") is True

    def announce_forms(self, person: str) -> list[str]:
        """Flag that the person has routing-form facts and return their lineages, in one atomic step
        (called after `add_form`: a booking linking the person at the same moment sees the flag or is seen)."""
        item = self._update_returning(f"{PERSON_PREFIX}{person}", "SET has_forms = :yes", {":yes": {"BOOL": True}})
        return _string_set(item, "lineages")

    def lineages_of_person(self, person: str) -> list[str]:
        """The lineages a person is a patient on (read only: operators and tests)."""
        return self._set(f"{PERSON_PREFIX}{person}", "lineages")

    def add_form(self, person: str, fact_json: str) -> None:
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": f"intake#{person}"}},
                UpdateExpression="ADD forms :values SET expires_at = :expires",
                ExpressionAttributeValues={
                    ":values": {"SS": [fact_json]},
                    ":expires": {"N": str(int(time.time()) + INTAKE_TTL_DAYS * 86400)},
                },
            )
        except (ClientError, BotoCoreError) as exc:
            raise StateStoreUnavailableError(type(exc).__name__) from exc

    def _set(self, pk: str, attribute: str) -> list[str]:
        try:
            item = self._client.get_item(TableName=self._table, Key={"pk": {"S": pk}}, ConsistentRead=True).get("Item")
        except (ClientError, BotoCoreError) as exc:
            raise StateStoreUnavailableError(type(exc).__name__) from exc
        return _string_set(item or {}, attribute)

    def forms_of(self, person: str) -> list[str]:
        return self._set(f"intake#{person}", "forms")


def encode_state(state: LineageState) -> bytes:
    """The stored form of a lineage state: its JSON (without the item's version), zlib-compressed."""
    return zlib.compress(state.model_dump_json(exclude={"version"}).encode("utf-8"))


def _string_set(item: dict[str, Any], attribute: str) -> list[str]:
    return sorted(item[attribute]["SS"]) if attribute in item else []
