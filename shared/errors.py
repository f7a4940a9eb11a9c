"""Error types per boundary. Each is mapped to an HTTP status or a queue outcome in exactly one place.

Messages (``detail``) are written for humans and never contain payload values: no names, e-mails,
birth dates or free text can reach a log line or an error body through these classes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ParkedEvent:
    """What a review listing may show of a message parked for review: PHI-free identifiers only."""

    lineage: str = ""
    booking_uid: str = ""
    trigger: str = ""
    event_type: str = ""
    start: str = ""


class IntakeError(Exception):
    """A webhook the bridge refuses. `status` and `code` are stable; `detail` carries no PHI."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class SignatureError(IntakeError):
    status = 401
    code = "invalid_signature"


class PayloadTooLargeError(IntakeError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaTypeError(IntakeError):
    status = 415
    code = "unsupported_media_type"


class InvalidJsonError(IntakeError):
    status = 400
    code = "invalid_json"


class InvalidShapeError(IntakeError):
    status = 422
    code = "invalid_payload"


class EhrError(Exception):
    """Base of the EHR adapter's errors. `reason` is a machine-readable code; no PHI in messages."""

    reason: str = "ehr_error"
    #: Set by the sync when the message is parked: which booking it was about (PHI-free).
    parked: ParkedEvent | None = None

    def __init__(self, detail: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.retry_after = retry_after


class RetryableEhrError(EhrError):
    """Timeouts, connection errors, 429, 5xx, version conflicts: the message comes back later."""

    reason = "ehr_retryable"


class PermanentEhrError(EhrError):
    """The EHR refused the request for good (400/403/404/422): park in review, never retry blindly."""

    reason = "ehr_rejected"


class ReviewRequired(Exception):  # noqa: N818 - it is an outcome, not a failure of the bridge
    """A message a human must look at: ambiguous patient, unmapped host or event type, EHR rejection."""

    #: Set by the sync: which booking the parked message was about (PHI-free).
    parked: ParkedEvent | None = None

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class LineageNotYetKnown(Exception):  # noqa: N818 - a transient ordering condition
    """An event (e.g. a no-show) arrived before the booking it refers to; retry after backoff."""
