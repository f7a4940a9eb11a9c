"""The bridge's names for things in the EHR: identifier systems, an identifier, and a FHIR resource document.

Both the pure projection (`shared.domain.projection`) and the EHR adapters (`shared.ehr`) speak of these,
so they live here, below both: the domain never imports the EHR layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: A FHIR resource as JSON (what the projection renders and the EHR adapters send and read).
Resource = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Identifier:
    system: str
    value: str

    @property
    def token(self) -> str:
        return f"{self.system}|{self.value}"


@dataclass(frozen=True, slots=True)
class IdentifierSystems:
    """The identifier systems (and the marker's URL) under the deployment's `IDENTIFIER_SYSTEM_BASE`."""

    base: str

    @property
    def lineage(self) -> str:
        return f"{self.base}/calcom-ical-uid"

    @property
    def booking(self) -> str:
        return f"{self.base}/calcom-booking-uid"

    @property
    def person(self) -> str:
        return f"{self.base}/calcom-person"

    @property
    def first_lineage(self) -> str:
        """On a Patient the bridge created: (a hash of) the lineage it was created for."""
        return f"{self.base}/calcom-first-lineage"

    @property
    def tag(self) -> str:
        return f"{self.base}/tags"

    @property
    def write_marker(self) -> str:
        """URL of the extension by which the bridge signs each Appointment version it writes."""
        return f"{self.base}/bridge-write"

    def lineage_identifier(self, lineage: str) -> Identifier:
        return Identifier(self.lineage, lineage)
