"""Which SIU events are due for a lineage, and their control ids. Pure.

v2 has no read-back, so the plan compares the projection the sync wants the engine to hold with the
last one the engine acknowledged (`SiuAck` in the lineage state):

| last acknowledged            | now                                   | due                        |
|------------------------------|---------------------------------------|----------------------------|
| nothing                      | cancelled                             | nothing (the engine never knew it) |
| nothing                      | no-show                               | S12 (booked), then S26     |
| nothing                      | pending, booked, fulfilled            | S12                        |
| the same projection          | anything                              | nothing                    |
| cancelled                    | cancelled                             | nothing                    |
| not cancelled                | cancelled (rejected: per mapping)     | S15 (or S17)               |
| not no-show                  | no-show                               | S26                        |
| anything else                | other start/end                       | S13                        |
| anything else                | other status, type, provider, location, patients, reason | S14     |

A booking brought back after a cancellation (a reschedule after "request reschedule") is an S13
(new times) or S14 with status Booked; an interface that closes appointments for good on S15 answers
AE/AR and the message goes to review.

MSH-10 is derived from (lineage, projection version, projection digest): a retry of the same message
(after a timeout, an AE to retry, or a commit the state store lost) sends the same control id, so the
engine can recognise it, while a different projection under the same version gets a new one.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

from shared.domain.lineage_state import SiuAck
from shared.ehr.hl7v2.siu import SiuEvent, SiuProjection

#: MSH-10 is ST(20) in 2.3.1.
CONTROL_ID_LENGTH = 20


@dataclass(frozen=True, slots=True)
class PlannedMessage:
    event: SiuEvent
    version: int
    control_id: str
    projection: SiuProjection

    def acknowledged(self) -> SiuAck:
        """The state's record once the engine accepted this message."""
        return SiuAck(
            control_id=self.control_id,
            version=self.version,
            event=self.event,
            digest=self.projection.digest(),
            status=self.projection.status,
            start=self.projection.start,
            end=self.projection.end,
        )


def control_id(lineage: str, version: int, digest: str) -> str:
    """Deterministic MSH-10 for (lineage, projection version, projection digest): 20 upper-case hex digits."""
    seed = f"{lineage}\n{version}\n{digest}".encode()
    return hashlib.sha256(seed).hexdigest()[:CONTROL_ID_LENGTH].upper()


def _message(lineage: str, version: int, event: SiuEvent, projection: SiuProjection) -> PlannedMessage:
    return PlannedMessage(event, version, control_id(lineage, version, projection.digest()), projection)


def plan_messages(
    lineage: str, last: SiuAck | None, wanted: SiuProjection, *, rejected_as: SiuEvent = "S15"
) -> list[PlannedMessage]:
    """The messages to send, in order, to bring the engine from `last` to `wanted` (see the table above)."""
    version = (last.version if last else 0) + 1
    if last is None:
        if wanted.status == "cancelled":
            return []
        if wanted.status == "noshow":
            booked = dataclasses.replace(wanted, status="booked")
            return [_message(lineage, version, "S12", booked), _message(lineage, version + 1, "S26", wanted)]
        return [_message(lineage, version, "S12", wanted)]
    if wanted.digest() == last.digest or (wanted.status == "cancelled" and last.status == "cancelled"):
        return []
    if wanted.status == "cancelled":
        event: SiuEvent = rejected_as if wanted.cancel_kind == "rejected" else "S15"
    elif wanted.status == "noshow" and last.status != "noshow":
        event = "S26"
    elif (wanted.start, wanted.end) != (last.start, last.end):
        event = "S13"
    else:
        event = "S14"
    return [_message(lineage, version, event, wanted)]
