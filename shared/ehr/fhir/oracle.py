"""Oracle Health (Cerner Millennium R4) style profile.

What differs from generic FHIR R4 there:

* **Create** is a plain `POST` with `status` `proposed` or `booked` only. The bridge creates a
  `pending` Appointment as `proposed` and anything else as `booked`; a cancelled one is then patched
  to `cancelled` (an allowed move from both).
* **No PUT**: updates are RFC 6902 JSON Patch (`application/json-patch+json`) with
  `If-Match: W/"<version>"`, limited to the paths the server accepts (default `/status`,
  `/cancelationReason`, `/reasonCode`, `/participant/<i>/status`; sites can change the list). A
  change outside them (e.g. a reschedule, which on Millennium means a new slot) is a
  `PermanentEhrError` naming the fields, so it is parked for review instead of being half applied.
* **No identifier search** on Appointment: the bridge keeps its own map identifier token → resource
  id (`IdMapStore`: in memory for tests, `shared.stores.id_map.DynamoIdMap` in the state table as
  `ehrmap#<token>`, or `ehrmap@<route>#<token>` for an extra EHR endpoint, so two EHRs' ids never collide).

Residual risk: if the process dies between the POST and the map write, a retry creates a second
resource (the server offers no way to find the first by our identifier). It takes a crash in that
window; nothing detects the duplicate automatically yet.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from shared.ehr.fhir.client import FhirProfileBase, FhirR4Client
from shared.ehr.port import Identifier, Resource, StoredResource
from shared.errors import PermanentEhrError, RetryableEhrError

JSON_PATCH = "application/json-patch+json"
#: JSON Patch paths the profile may send (`*` = any array index). Millennium documents status,
#: cancelationReason and reasonCode; participant status is needed for proposed → booked. Sites can
#: widen or narrow this (`build_ehr_client(..., patchable=...)`).
DEFAULT_PATCHABLE = frozenset({"status", "cancelationReason", "reasonCode", "participant/*/status"})
_CREATE_STATUSES = ("proposed", "booked")
#: `extension` too: Millennium keeps no foreign extensions, so the bridge's ownership marker is not sent
#: (ownership falls back to the lineage state there, see shared/sync/fhir_writer.py).
_NOT_COMPARED = frozenset({"meta", "id", "text", "resourceType", "extension"})


class IdMapStore(Protocol):
    """identifier token → EHR resource id, written once."""

    def get(self, token: str) -> str | None: ...

    def put_if_absent(self, token: str, resource_id: str) -> str:
        """Store the mapping unless one exists; return the stored id (the existing one on a race)."""
        ...


class InMemoryIdMap:
    def __init__(self) -> None:
        self._items: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, token: str) -> str | None:
        with self._lock:
            return self._items.get(token)

    def put_if_absent(self, token: str, resource_id: str) -> str:
        with self._lock:
            return self._items.setdefault(token, resource_id)


def _pointer(key: str) -> str:
    return "/" + key.replace("~", "~0").replace("/", "~1")


def _participant_status_ops(current: Any, desired: Any) -> list[dict[str, Any]] | None:
    """`replace /participant/<i>/status` ops when the participants differ only in their status."""
    if not isinstance(current, list) or not isinstance(desired, list) or len(current) != len(desired):
        return None
    ops = []
    for index, (before, after) in enumerate(zip(current, desired, strict=True)):
        if not isinstance(before, dict) or not isinstance(after, dict):
            return None
        if {k: v for k, v in before.items() if k != "status"} != {k: v for k, v in after.items() if k != "status"}:
            return None
        if before.get("status") != after.get("status"):
            ops.append({"op": "replace", "path": f"/participant/{index}/status", "value": after.get("status")})
    return ops


def patch_scope(path: str) -> str:
    """`/participant/3/status` → `participant/*/status`: the form `patchable` is written in."""
    return "/".join("*" if part.isdigit() else part for part in path.lstrip("/").split("/"))


def json_patch(current: Resource, desired: Resource) -> list[dict[str, Any]]:
    """RFC 6902 operations turning `current` into `desired`: top-level members, except that a change of
    participant statuses only becomes per-participant `status` replaces (meta/id/text are not compared)."""
    ops: list[dict[str, Any]] = []
    for key in sorted(set(current) | set(desired)):
        if key in _NOT_COMPARED or current.get(key) == desired.get(key):
            continue
        if key == "participant" and (statuses := _participant_status_ops(current.get(key), desired.get(key))):
            ops += statuses
            continue
        if key not in desired:
            ops.append({"op": "remove", "path": _pointer(key)})
        else:
            ops.append({"op": "replace" if key in current else "add", "path": _pointer(key), "value": desired[key]})
    return ops


class OracleHealthClient(FhirProfileBase):
    """`EhrClient` for Oracle Health (Millennium) style servers: POST create, JSON Patch updates, id map."""

    def __init__(
        self, fhir: FhirR4Client, id_map: IdMapStore, *, patchable: frozenset[str] = DEFAULT_PATCHABLE
    ) -> None:
        super().__init__(fhir)
        self._map = id_map
        self._patchable = patchable

    def create_if_none_exist(self, resource: Resource, identifier: Identifier) -> StoredResource:
        resource_type = str(resource["resourceType"])
        known = self._map.get(identifier.token)
        if known is not None:
            existing = self._fhir.read(resource_type, known)
            if existing is not None:
                return existing
            raise PermanentEhrError(f"the {resource_type} the bridge created is gone from the EHR", status=404)
        body = dict(resource)
        body.pop("id", None)
        body.pop("extension", None)
        wanted_status = body.get("status")
        if resource_type == "Appointment" and wanted_status not in _CREATE_STATUSES:
            body["status"] = "proposed" if wanted_status == "pending" else "booked"
        response = self._fhir.send("POST", resource_type, json=body)
        created = self._stored_or_read(response, resource_type)
        winner = self._map.put_if_absent(identifier.token, created.id)
        if winner != created.id:  # another worker created one first; use theirs
            other = self._fhir.read(resource_type, winner)
            if other is not None:
                return other
        if resource_type == "Appointment" and wanted_status == "cancelled":
            patched = self._patch(created, [{"op": "replace", "path": "/status", "value": "cancelled"}])
            return StoredResource(id=patched.id, version=patched.version, resource=patched.resource, created=True)
        return StoredResource(id=created.id, version=created.version, resource=created.resource, created=True)

    def update(self, resource: Resource, version: str | None) -> StoredResource:
        resource_type = str(resource["resourceType"])
        current = self._fhir.read(resource_type, str(resource["id"]))
        if current is None:
            raise PermanentEhrError(f"the {resource_type} to update is gone from the EHR", status=404)
        if version is not None and current.version != version:
            raise RetryableEhrError(f"{resource_type} changed in the EHR since it was read", status=412)
        ops = json_patch(current.resource, resource)
        if not ops:
            return current
        refused = sorted({patch_scope(op["path"]) for op in ops} - self._patchable)
        if refused:
            raise PermanentEhrError(
                f"Oracle Health profile cannot change {', '.join(refused)} of an {resource_type} by JSON Patch",
                status=422,
            )
        return self._patch(current, ops)

    def _patch(self, current: StoredResource, ops: list[dict[str, Any]]) -> StoredResource:
        resource_type = str(current.resource["resourceType"])
        headers = {"Content-Type": JSON_PATCH}
        if current.version is not None:
            headers["If-Match"] = f'W/"{current.version}"'
        response = self._fhir.send(
            "PATCH",
            f"{resource_type}/{quote(current.id, safe='')}",
            content=json.dumps(ops, separators=(",", ":")).encode("utf-8"),
            headers=headers,
        )
        return self._stored_or_read(response, resource_type, current.id)

    def _stored_or_read(
        self, response: httpx.Response, resource_type: str, resource_id: str | None = None
    ) -> StoredResource:
        """Millennium may answer 201/200 without a body (ETag + Location only): read it back then."""
        if response.content.strip():
            return self._fhir.stored(response)
        if resource_id is None:
            location = response.headers.get("Location", "")
            parts = location.rstrip("/").split("/")
            if resource_type in parts and parts.index(resource_type) + 1 < len(parts):
                resource_id = parts[parts.index(resource_type) + 1]
        if not resource_id:
            raise RetryableEhrError(f"{resource_type} write answered without a body or Location")
        stored = self._fhir.read(resource_type, resource_id)
        if stored is None:
            raise RetryableEhrError(f"{resource_type} written but not readable yet", status=404)
        return stored
