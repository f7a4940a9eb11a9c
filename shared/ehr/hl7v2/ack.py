"""Reading the interface engine's ACK and deciding what it means. Pure.

| ACK (MSA-1)                      | outcome                                                        |
|----------------------------------|----------------------------------------------------------------|
| AA, CA                           | applied: the engine accepted the message                       |
| AE, CE with a retry code         | `SiuRetryError` (retryable): backoff, same control id          |
| AE, CE otherwise                 | `SiuApplicationError` (permanent): review, unless the policy says retry |
| AR, CR                           | `SiuRejectedError` (permanent): review                              |
| none, garbled, another MSA-2     | `SiuNoAckError` (retryable): the connection is dropped    |

Error codes are read from MSA-6 (2.3.1), ERR-1.4 (2.3.1 ELD) and ERR-3 (2.5+). Nothing else of the
ACK is kept: its free text (MSA-3, ERR-8) may echo patient data and never reaches an error or a log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.clinic.mapping import Hl7AckPolicy
from shared.errors import PermanentEhrError, RetryableEhrError

_CODE = re.compile(r"^[A-Za-z0-9_.\-]{1,20}$")
MAX_CODES = 5


class SiuNoAckError(RetryableEhrError):
    """No ACK, a timeout, a dropped connection or an ACK that is not for this message."""

    reason = "hl7_no_ack"


class SiuRetryError(RetryableEhrError):
    """AE (or CE) with an error code the clinic mapping lists as transient."""

    reason = "hl7_error_retry"


class SiuApplicationError(PermanentEhrError):
    """AE (or CE): the engine understood the message but could not apply it."""

    reason = "hl7_application_error"


class SiuRejectedError(PermanentEhrError):
    """AR (or CR): the engine rejected the message (structure, version, event, receiving application)."""

    reason = "hl7_rejected"


@dataclass(frozen=True, slots=True)
class Ack:
    code: str
    control_id: str
    error_codes: tuple[str, ...] = ()


def _safe_code(value: str) -> str | None:
    value = value.strip()
    return value if _CODE.match(value) else None


def read_ack(text: str) -> Ack:
    """The MSA acknowledgment code, the control id it answers and any error codes; `SiuNoAckError`
    when the text is not an ACK."""
    segments = [s for s in re.split(r"[\r\n]+", text) if s]
    if not segments or not segments[0].startswith("MSH") or len(segments[0]) < 8:
        raise SiuNoAckError("the answer is not an HL7 message")
    field_sep, component_sep = segments[0][3], segments[0][4]
    subcomponent_sep = segments[0][7] if len(segments[0]) > 7 else "&"
    msa: list[str] | None = None
    codes: list[str] = []
    for raw in segments:
        fields = raw.split(field_sep)
        if fields[0] == "MSA" and msa is None:
            msa = fields
            if len(fields) > 6:
                codes.append(fields[6].split(component_sep)[0])
        elif fields[0] == "ERR":
            if len(fields) > 1:  # 2.3.1: ERR-1 ELD, its 4th component the code (CE)
                eld = fields[1].split(component_sep)
                if len(eld) > 3:
                    codes.append(eld[3].split(subcomponent_sep)[0])
            if len(fields) > 3:  # 2.5+: ERR-3 HL7 error code (CWE)
                codes.append(fields[3].split(component_sep)[0])
    if msa is None or len(msa) < 3:
        raise SiuNoAckError("the answer has no MSA segment")
    code = msa[1].strip().upper()
    if code not in ("AA", "AE", "AR", "CA", "CE", "CR"):
        raise SiuNoAckError("the answer's MSA-1 is not an acknowledgment code")
    found = tuple(dict.fromkeys(c for c in (_safe_code(raw) for raw in codes) if c))[:MAX_CODES]
    return Ack(code=code, control_id=msa[2].strip(), error_codes=found)


def check_ack(ack: Ack, control_id: str, policy: Hl7AckPolicy) -> None:
    """Return when the message was accepted; raise the error class for every other answer."""
    if ack.control_id != control_id:
        raise SiuNoAckError("the ACK answers another message (MSA-2 differs from MSH-10)")
    if ack.code in ("AA", "CA"):
        return
    codes = ", ".join(ack.error_codes) or "none"
    detail = f"interface engine answered {ack.code} (error codes: {codes})"
    if ack.code in ("AR", "CR"):
        raise SiuRejectedError(detail)
    if any(code in policy.retry_codes for code in ack.error_codes) or policy.otherwise == "retry":
        raise SiuRetryError(detail)
    raise SiuApplicationError(detail)
