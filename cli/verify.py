"""`calehr verify`: compare each lineage's projection with the EHR copy (drift), and repair what the bridge owns.

It runs the sync's own check (`shared.sync.service.SyncService.verify`, under the lineage's lease) from the
operator's machine, with the target's resources: the state and audit tables, the EHR endpoint and its
credentials, the pseudonym key (Location mapping keys) and the clinic mapping. Verdicts (PHI-free):

* `in_sync`      the EHR copy says what the bridge projects;
* `bridge_stale` a bridge-owned field differs and the copy still carries the bridge's own signature: a
                 write the bridge left behind (repaired with `--repair`, audited as `drift_repaired`);
* `ehr_changed`  someone changed bridge-owned fields in the EHR since: reported, never overwritten here;
* `unmarked`     the EHR keeps no ownership marker (Oracle Health profile): reported only;
* `missing`      the Appointment the bridge wrote is gone from the EHR: reported;
* `cannot_read_back` (HL7 v2 routes), `no_appointment`, `busy` (another worker holds the lineage).

Exit 1 when drift was found and not repaired, so a script can page on it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cli.errors import EXIT_FAILED, EXIT_OK, CliError
from cli.output import Output
from cli.target import Target
from shared.clinic.mapping import ClinicConfig

#: Verdicts that are drift (the EHR copy does not say what the bridge projects).
DRIFT = frozenset({"bridge_stale", "ehr_changed", "unmarked", "missing"})


@dataclass(frozen=True, slots=True)
class Verdict:
    lineage: str
    verdict: str
    fields: str = ""
    appointment: str = ""

    def row(self) -> dict[str, str]:
        return {
            "lineage": self.lineage,
            "verdict": self.verdict,
            "fields": self.fields,
            "appointment": self.appointment,
        }


def _secret(target: Target, name: str) -> dict[str, Any]:
    value = target.client("secretsmanager").get_secret_value(SecretId=name)["SecretString"]
    document = json.loads(value)
    if not isinstance(document, dict):
        raise CliError(f"secret {name} is not a JSON object")
    return document


def build_service(target: Target, config: ClinicConfig) -> Any:
    """A `SyncService` over the target's resources (the same wiring as the sync function's)."""
    from cli.doctor import endpoint_auth  # noqa: PLC0415
    from shared.domain.identifiers import IdentifierSystems  # noqa: PLC0415
    from shared.ehr.profiles import build_ehr_client  # noqa: PLC0415
    from shared.settings import SyncSettings  # noqa: PLC0415
    from shared.stores.audit import AuditTrail  # noqa: PLC0415
    from shared.stores.id_map import DynamoIdMap  # noqa: PLC0415
    from shared.stores.lineages import LineageStateStore  # noqa: PLC0415
    from shared.sync.bootstrap import sync_service  # noqa: PLC0415

    ddb = target.client("dynamodb")
    routes: dict[str, tuple[str, str, str | None]] = {
        "default": (
            target.get("ehr_base_url"),
            target.optional("ehr_profile") or "generic",
            target.optional("ehr_auth_secret_name"),
        )
    }
    for name, route in json.loads(target.optional("ehr_routes") or "{}").items():
        routes[name] = (route["base_url"], route.get("profile", "generic"), route.get("auth_secret_name"))
    clients = {}
    for name, (base_url, profile, secret_name) in routes.items():
        document = _secret(target, secret_name) if secret_name else None
        auth = endpoint_auth(document, base_url, profile, region=target.region, timeout_seconds=10.0)
        id_map = DynamoIdMap(target.state_table, ddb, namespace="" if name == "default" else name)
        clients[name] = build_ehr_client(profile, base_url, auth=auth, timeout_seconds=10.0, id_map=id_map)
    pseudonym = _secret(target, target.get("pseudonym_secret_name"))
    return sync_service(
        store=LineageStateStore(target.state_table, ddb),
        ehr=clients.pop("default"),
        ehr_routes=clients,
        config=config,
        systems=IdentifierSystems(SyncSettings.model_fields["identifier_system_base"].default),
        pseudonym_key=str(pseudonym["key"]).encode("utf-8"),
        audit=AuditTrail(target.audit_table, ddb),
    )


def lineages(target: Target, *, lineage: str | None, booking: str | None, since: datetime | None) -> list[str]:
    from shared.stores.lineages import LineageStateStore  # noqa: PLC0415

    store = LineageStateStore(target.state_table, target.client("dynamodb"))
    if lineage:
        return [lineage]
    if booking:
        found = store.lineage_of(booking)
        if found is None:
            raise CliError(f"no lineage for booking uid {booking}")
        return [found]
    return store.lineages(changed_since=since)


def check(service: Any, keys: Iterable[str], *, repair: bool, progress: Any = None) -> list[Verdict]:
    from shared.stores.lineages import LineageBusyError  # noqa: PLC0415
    from shared.sync.message import Delivery  # noqa: PLC0415

    verdicts = []
    for key in keys:
        try:
            result = service.verify(key, repair=repair, source=Delivery(source_system="operator-cli"))
        except LineageBusyError:
            verdicts.append(Verdict(key, "busy"))
        else:
            assert result.drift is not None
            kind, fields = result.drift.verdict.value, ",".join(result.drift.fields)
            appointment = f"Appointment/{result.appointment_id}" if result.appointment_id else ""
            verdicts.append(Verdict(key, kind, fields, appointment))
        if progress is not None:
            progress()
    return verdicts


def queue_checks(target: Target, out: Output, keys: list[str]) -> int:
    """Send one drift check per lineage to the events queue, in the lineage's FIFO group (behind its events):
    the sync function checks and repairs with its own role and records each verdict in the audit trail."""
    from shared.reconcile.drift_checks import verify_message  # noqa: PLC0415
    from shared.stores.queue import EventQueue  # noqa: PLC0415

    queue = EventQueue(target.queue_url, target.client("sqs"))
    window = f"operator:{datetime.now(UTC).isoformat(timespec='seconds')}"
    for key in keys:
        queue.send(verify_message(key, window=window))
    out.result(
        {"queued": len(keys)},
        text=f"{len(keys)} drift check(s) queued; verdicts: `calehr audit <booking uid>`, the DriftFound metric",
    )
    return EXIT_OK


def report(out: Output, verdicts: list[Verdict]) -> int:
    """A table of every lineage not in sync, a summary; exit 1 while drift is left (repaired is not drift)."""
    counts: dict[str, int] = {}
    for verdict in verdicts:
        counts[verdict.verdict] = counts.get(verdict.verdict, 0) + 1
    shown = [v.row() for v in verdicts if v.verdict != "in_sync"]
    if not out.as_json:  # the JSON document below carries the same rows
        out.table(shown, ["lineage", "verdict", "fields", "appointment"])
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "no lineages"
    out.result({"checked": len(verdicts), "counts": counts, "drift": shown}, text=f"{len(verdicts)} checked: {summary}")
    return EXIT_FAILED if any(k in DRIFT for k in counts) else EXIT_OK


def config_of(target: Target, config_file: Path | None) -> ClinicConfig:
    from shared.clinic.source import load_config  # noqa: PLC0415

    if config_file is not None:
        return load_config(f"file:{config_file}")
    from cli.doctor import config_from_target  # noqa: PLC0415

    return config_from_target(target)
