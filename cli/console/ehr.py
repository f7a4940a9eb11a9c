"""The EHR side of the console: the current Appointment of a booking, and names on an audited reveal.

Endpoints come from the target as for `calehr doctor` (the local FHIR server; a stack's `EhrBaseUrl`,
`EhrProfile`, `EhrRoutes` outputs and their auth secrets, read with the operator's own credentials).
Reads only. The Appointment is summarised without names (`shared.console.views.appointment_summary`);
names are read only by `names`, which the console calls after the reveal's audit record is written.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cli.doctor import endpoint_auth
from cli.errors import describe
from cli.target import Target
from shared.console.view_models import AppointmentSummary, RevealedName, SlotSummary
from shared.console.views import appointment_summary
from shared.contracts.deployment import DEFAULT_ROUTE
from shared.ehr.fhir.client import FhirR4Client
from shared.ehr.profiles import ProfileError
from shared.errors import EhrError

#: Resource types whose names a reveal reads (the participants of an Appointment).
NAMED_TYPES = ("Patient", "Practitioner", "PractitionerRole", "Location", "RelatedPerson")
TIMEOUT_SECONDS = 10.0


@dataclass
class _Endpoint:
    base_url: str
    profile: str
    auth_secret_name: str = ""


@dataclass
class EhrReader:
    """One FHIR client per EHR route, built on first use; a route that cannot be reached says why."""

    target: Target
    region: str | None = None
    _clients: dict[str, FhirR4Client | str] = field(default_factory=dict)

    def _endpoints(self) -> dict[str, _Endpoint]:
        endpoints = {
            DEFAULT_ROUTE: _Endpoint(
                self.target.get("ehr_base_url"),
                self.target.optional("ehr_profile") or "generic",
                (self.target.optional("ehr_auth_secret_name") or "") if self.target.kind == "stack" else "",
            )
        }
        for name, spec in json.loads(self.target.optional("ehr_routes") or "{}").items():
            endpoints[name] = _Endpoint(
                spec["base_url"], spec.get("profile", "generic"), spec.get("auth_secret_name", "")
            )
        return endpoints

    def _client(self, route: str) -> FhirR4Client | str:
        """The route's client, or why there is none (a sentence for the page)."""
        if route in self._clients:
            return self._clients[route]
        try:
            endpoint = self._endpoints().get(route)
            if endpoint is None:
                result: FhirR4Client | str = f"the EHR route {route} is not in this target's outputs"
            elif endpoint.profile == "hl7v2":
                result = (
                    "an HL7 v2 interface engine has no read-back; the bridge state shows the last SIU it acknowledged"
                )
            else:
                document = self._secret(endpoint.auth_secret_name) if endpoint.auth_secret_name else None
                auth = endpoint_auth(
                    document, endpoint.base_url, endpoint.profile, region=self.region, timeout_seconds=TIMEOUT_SECONDS
                )
                result = FhirR4Client(endpoint.base_url, auth=auth, timeout_seconds=TIMEOUT_SECONDS)
        except (ProfileError, ValueError) as exc:
            result = f"the EHR cannot be used from here: {exc}"
        except Exception as exc:  # noqa: BLE001 - the page says why; the rest of the console still works
            result = f"the EHR cannot be used from here: {describe(exc) or type(exc).__name__}"
        self._clients[route] = result
        return result

    def _secret(self, name: str) -> dict[str, Any] | None:
        value = self.target.client("secretsmanager").get_secret_value(SecretId=name)["SecretString"]
        document = json.loads(value)
        return document if isinstance(document, dict) else None

    def appointment(self, slot: SlotSummary | None) -> tuple[AppointmentSummary | None, str]:
        """(summary, note): the EHR's Appointment the bridge wrote, or why it is not shown."""
        if slot is None or not slot.appointment:
            return None, "The bridge has not written an Appointment for this booking."
        client = self._client(slot.ehr_route or DEFAULT_ROUTE)
        if isinstance(client, str):
            return None, client[0].upper() + client[1:] + "."
        resource_id = slot.appointment.split("/", 1)[1]
        try:
            stored = client.read("Appointment", resource_id)
        except EhrError as exc:
            return None, f"The EHR did not answer: {exc.detail}."
        if stored is None:
            return None, f"{slot.appointment} is not in the EHR (deleted, or written under another id)."
        return appointment_summary(stored.resource, stored.version), ""

    def names(self, route: str, references: list[str]) -> list[RevealedName]:
        """The display name of each participant reference (read now, never kept)."""
        client = self._client(route or DEFAULT_ROUTE)
        if isinstance(client, str):
            raise EhrUnavailableError(client)
        found = []
        for reference in references:
            kind, _, resource_id = reference.partition("/")
            if kind not in NAMED_TYPES or not resource_id:
                continue
            try:
                stored = client.read(kind, resource_id)
            except EhrError as exc:
                raise EhrUnavailableError(f"the EHR did not answer: {exc.detail}") from None
            found.append(RevealedName(reference, display_name(stored.resource) if stored else "(not found)"))
        return found


class EhrUnavailableError(Exception):
    """The EHR could not be read for a reveal (the reveal was audited; the page says why it shows nothing)."""


def display_name(resource: Mapping[str, Any]) -> str:
    """A person's official (else first) HumanName as `given family`, or a Location's name."""
    if resource.get("resourceType") == "Location":
        return str(resource.get("name") or "(no name)")
    names = [n for n in resource.get("name") or [] if isinstance(n, Mapping)]
    if not names:
        return "(no name)"
    chosen = next((n for n in names if n.get("use") == "official"), names[0])
    if chosen.get("text"):
        return str(chosen["text"])
    given = [str(g) for g in chosen.get("given") or []]
    return " ".join([*given, str(chosen.get("family", ""))]).strip() or "(no name)"
