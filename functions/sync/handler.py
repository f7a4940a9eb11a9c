"""Sync Lambda: SQS FIFO batch → EHR, with a partial batch response.

`SqsFifoPartialProcessor(skip_group_on_error=True)` keeps each lineage's order while letting other
lineages in the batch proceed. Outcomes, decided in exactly one place (`_handle`):

* applied / duplicate / stale / recorded → the message is done (deleted);
* review required or a permanent EHR refusal → parked in the review store with its reason, then done;
* retryable (EHR down, conflict, booking not seen yet, store throttled) → batch item failure, and the
  message's visibility is extended with exponential backoff (honouring `Retry-After`).

Records are taken only while one EHR timeout (+ margin) is left of the invocation; the rest of the
batch is reported as batch item failures and comes back (`shared/time_budget.py`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from functools import cache
from typing import Any, Protocol

import boto3
from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError

from shared.config.clinic import ClinicConfig
from shared.config.rules import RULE_NAMES
from shared.config.source import ClinicConfigSource
from shared.domain.availability import EHR_CONFLICT
from shared.domain.identifiers import IdentifierSystems
from shared.domain.rules import RuleViolated
from shared.ehr.breaker import BreakerEhrClient, CircuitBreaker
from shared.ehr.hl7v2.endpoint import siu_writer
from shared.ehr.hl7v2.writer import SiuWriter
from shared.ehr.oracle import DynamoIdMap
from shared.ehr.profiles import build_ehr_client, profile_auth
from shared.errors import EhrError, LineageNotYetKnown, ParkedEvent, PermanentEhrError, ReviewRequired
from shared.observability import count, count_by, logger, metrics
from shared.settings import DEFAULT_ROUTE, SyncSettings, sync_settings
from shared.snapstart import forget_after_restore
from shared.stores.audit import AuditTrail, AuditUnavailableError
from shared.stores.idempotency import IdempotencyGuard
from shared.stores.review import ReviewItem, ReviewStore
from shared.stores.secrets import SecretReader
from shared.stores.state import (
    LineageBusyError,
    LineageStateStore,
    StateConflictError,
    StateStoreUnavailableError,
)
from shared.sync import Delivery, SyncService
from shared.time_budget import has_time_for_one_more

processor = SqsFifoPartialProcessor(skip_group_on_error=True)

BASE_BACKOFF_SECONDS = 10
MAX_BACKOFF_SECONDS = 900
#: The metric of a booking-rule violation (parked, warned or accepted), by rule name.
RULE_VIOLATION_METRIC = "RuleViolation"
#: The message attribute by which `calehr review retry --accept-rule` names accepted rules.
ACCEPTED_RULES_ATTRIBUTE = "acceptedRules"


class RetryLater(Exception):  # noqa: N818 - a queue outcome, raised to mark the batch item failed
    """Raised after the message's visibility was extended; the processor reports it as failed."""


class _Secrets(Protocol):
    def json(self, secret_id: str) -> dict[str, Any]: ...


def _ehr_endpoint(
    *,
    route: str,
    base_url: str,
    profile: str,
    auth_secret_arn: str,
    region: str,
    settings: SyncSettings,
    secrets: _Secrets,
    breaker: CircuitBreaker,
) -> BreakerEhrClient:
    """One EHR endpoint, built the same way for the default endpoint and for every route."""
    document = secrets.json(auth_secret_arn) if auth_secret_arn else None
    auth = profile_auth(document, base_url, profile, region=region, timeout_seconds=settings.ehr_timeout_seconds)
    id_map = None
    if profile == "oracle":  # each route keeps its own id map: two EHRs' ids never collide
        id_map = DynamoIdMap(settings.state_table, namespace="" if route == DEFAULT_ROUTE else route)
    client = build_ehr_client(profile, base_url, auth=auth, timeout_seconds=settings.ehr_timeout_seconds, id_map=id_map)
    return BreakerEhrClient(client, breaker)


def build_ehr_clients(
    settings: SyncSettings, secrets: _Secrets
) -> tuple[BreakerEhrClient | None, dict[str, BreakerEhrClient]]:
    """The default FHIR endpoint and one per FHIR `EHR_ROUTES` entry, each behind its own circuit breaker
    (one EHR's outage never opens another's circuit). `hl7v2` endpoints: `build_siu_writers`."""
    default = (
        None
        if settings.ehr_profile == "hl7v2"
        else _ehr_endpoint(
            route=DEFAULT_ROUTE,
            base_url=settings.ehr_base_url,
            profile=settings.ehr_profile,
            auth_secret_arn=settings.ehr_auth_secret_arn,
            region=settings.ehr_region,
            settings=settings,
            secrets=secrets,
            breaker=_breaker(),
        )
    )
    routes = {
        name: _ehr_endpoint(
            route=name,
            base_url=route.base_url,
            profile=route.profile,
            auth_secret_arn=route.auth_secret_arn,
            region=route.region,
            settings=settings,
            secrets=secrets,
            breaker=_route_breaker(name),
        )
        for name, route in settings.ehr_routes.items()
        if route.profile != "hl7v2"
    }
    return default, routes


def build_siu_writers(settings: SyncSettings, secrets: _Secrets) -> dict[str, SiuWriter]:
    """One SIU writer (MLLP client, TLS material from the endpoint's secret) per `hl7v2` endpoint,
    behind the same per-endpoint circuit breakers as the FHIR ones."""
    endpoints = [(DEFAULT_ROUTE, settings.ehr_base_url, settings.ehr_auth_secret_arn, settings.ehr_mllp_plaintext)]
    if settings.ehr_profile != "hl7v2":
        endpoints = []
    endpoints += [
        (name, route.base_url, route.auth_secret_arn, route.mllp_plaintext)
        for name, route in settings.ehr_routes.items()
        if route.profile == "hl7v2"
    ]
    return {
        name: siu_writer(
            base_url,
            secrets.json(secret_arn) if secret_arn else None,
            plaintext_allowed=plaintext,
            timeout_seconds=settings.ehr_timeout_seconds,
            breaker=_breaker() if name == DEFAULT_ROUTE else _route_breaker(name),
        )
        for name, base_url, secret_arn, plaintext in endpoints
    }


class _Runtime:
    """What a container builds once: EHR clients, stores, keys and the clinic config source.

    `service()` hands out a `SyncService` over these with the clinic mapping as of now: the same
    instance while the mapping is unchanged (its practitioner cache stays warm), a new one, built
    cheaply from the same objects, once the source has loaded a changed mapping.
    """

    def __init__(self, settings: SyncSettings) -> None:
        secrets = SecretReader()
        self.ehr, self.ehr_routes = build_ehr_clients(settings, secrets)
        self.siu_writers = build_siu_writers(settings, secrets)
        self.store = LineageStateStore(settings.state_table, lease_seconds=settings.lineage_lease_seconds)
        self.systems = IdentifierSystems(settings.identifier_system_base)
        self.pseudonym_key = str(secrets.json(settings.pseudonym_secret_arn)["key"]).encode("utf-8")
        self.audit = AuditTrail(settings.audit_table) if settings.audit_table else None
        self.idempotency = IdempotencyGuard(settings.idempotency_table)
        self.config = ClinicConfigSource.from_uri(
            settings.clinic_config_source,
            max_age_seconds=settings.clinic_config_max_age_seconds,
        )
        self.config.get()  # fail the cold start on an invalid mapping, as before
        self._lock = threading.Lock()
        self._service: SyncService | None = None
        self._service_config: ClinicConfig | None = None

    def wrap_ports(self, wrap: Callable[[str, Any], Any]) -> None:
        """Put `wrap(name, port)` around every port the service uses (dev tooling: the chaos poller's kill
        switch); the next message gets a service built over the wrapped ports."""
        with self._lock:
            self.store = wrap("store", self.store)
            self.ehr = wrap("ehr", self.ehr) if self.ehr is not None else None
            self.ehr_routes = {name: wrap(f"ehr:{name}", client) for name, client in self.ehr_routes.items()}
            self.siu_writers = {name: wrap(f"siu:{name}", writer) for name, writer in self.siu_writers.items()}
            self.audit = wrap("audit", self.audit) if self.audit is not None else None
            self._service = None

    def service(self) -> SyncService:
        config = self.config.get()
        with self._lock:
            if self._service is None or self._service_config is not config:
                self._service = SyncService(
                    store=self.store,
                    ehr=self.ehr,
                    ehr_routes=self.ehr_routes,
                    siu_routes=self.siu_writers,
                    config=config,
                    systems=self.systems,
                    pseudonym_key=self.pseudonym_key,
                    audit=self.audit,
                    idempotency=self.idempotency,
                )
                self._service_config = config
            return self._service


@cache
def _runtime() -> _Runtime:
    return _Runtime(sync_settings())


class _CurrentService:
    """`_service()`: the `SyncService` for the message at hand (see `_Runtime.service`).

    `_service.cache_clear()` forgets everything the container built (tests and the bench call it
    after changing the environment, like every other cached adapter here).
    """

    def __call__(self) -> SyncService:
        return _runtime().service()

    def cache_clear(self) -> None:
        _runtime.cache_clear()


_service = _CurrentService()


def _new_breaker() -> CircuitBreaker:
    settings = sync_settings()
    return CircuitBreaker(
        failure_threshold=settings.breaker_failure_threshold, cooldown_seconds=settings.breaker_cooldown_seconds
    )


@cache
def _breaker() -> CircuitBreaker:
    """Lives as long as the container: an EHR outage opens it for every message this container handles."""
    return _new_breaker()


@cache
def _route_breaker(route: str) -> CircuitBreaker:
    """The breaker of one `EHR_ROUTES` endpoint (by name): separate from the default one and from each
    other, so one EHR's outage never stops the messages bound for another."""
    return _new_breaker()


@cache
def _review_store() -> ReviewStore:
    return ReviewStore(sync_settings().review_table)


@cache
def _sqs() -> Any:
    return boto3.client("sqs")


forget_after_restore(_service, _breaker, _route_breaker, _review_store, _sqs, sync_settings)  # SnapStart restores


#: A lineage another worker is applying: come back soon, not on the exponential schedule.
BUSY_BACKOFF_SECONDS = 2


def backoff_seconds(receive_count: int, retry_after: float | None) -> int:
    """Exponential backoff by delivery attempt, at least the EHR's Retry-After, capped at 15 min."""
    exponential = BASE_BACKOFF_SECONDS * 2 ** max(0, receive_count - 1)
    wanted = max(exponential, retry_after or 0)
    return int(min(MAX_BACKOFF_SECONDS, wanted))


def _retry_later(
    record: SQSRecord, reason: str, retry_after: float | None = None, *, delay: int | None = None
) -> RetryLater:
    receive_count = int(record.attributes.approximate_receive_count or "1")
    if delay is None:
        delay = backoff_seconds(receive_count, retry_after)
    count("SyncRetried")
    logger.warning("retry later", extra={"reason": reason, "attempt": receive_count, "backoff_s": delay})
    try:
        _sqs().change_message_visibility(
            QueueUrl=sync_settings().queue_url, ReceiptHandle=record.receipt_handle, VisibilityTimeout=delay
        )
    except (ClientError, BotoCoreError):  # the queue's own visibility timeout still brings it back
        logger.warning("could not extend visibility", extra={"reason": reason})
    return RetryLater(reason)


def _park(record: SQSRecord, exc: ReviewRequired | PermanentEhrError) -> None:
    reason, detail, parked = exc.reason, exc.detail, exc.parked
    trigger_attribute = record.raw_event.get("messageAttributes", {}).get("trigger") or {}
    parked = parked or ParkedEvent()
    review_id = _review_store().park(
        ReviewItem(
            reason=reason,
            detail=detail,
            # The event's own trigger when it parsed; else what ingest put on the message.
            trigger=parked.trigger or str(trigger_attribute.get("stringValue") or "unknown"),
            lineage_hash=record.attributes.message_group_id or "",
            body=record.body,
            message_id=record.message_id,
            lineage=parked.lineage,
            booking_uid=parked.booking_uid,
            event_type=parked.event_type,
            start=parked.start,
        )
    )
    count("ReviewParked")
    if reason == EHR_CONFLICT:
        count("EhrConflict")  # the slot is taken in the EHR (docs/availability.md)
    if isinstance(exc, RuleViolated):
        _count_rule_violations(exc.rules)
    logger.warning("parked for review", extra={"reason": reason, "review_id": review_id})


def _delivery(record: SQSRecord) -> Delivery:
    sent_ms = record.attributes.sent_timestamp
    received_at = datetime.fromtimestamp(int(sent_ms) / 1000, UTC).isoformat(timespec="milliseconds") if sent_ms else ""
    attributes = record.raw_event.get("messageAttributes", {})
    source = (attributes.get("source") or {}).get("stringValue")
    accepted = str((attributes.get(ACCEPTED_RULES_ATTRIBUTE) or {}).get("stringValue") or "")
    return Delivery(
        received_at=received_at,
        source_system=str(source or "calcom-webhook"),
        # Only rule names count; anything else in the attribute is ignored.
        accepted_rules=frozenset(name for name in accepted.split(",") if name in RULE_NAMES),
    )


def _count_rule_violations(rules: Iterable[str]) -> None:
    for rule in rules:
        count_by(RULE_VIOLATION_METRIC, "rule", rule)


def _handle(record: SQSRecord) -> None:
    try:
        result = _service().process(record.body, _delivery(record))
    except ReviewRequired as exc:
        _park(record, exc)
        return
    except PermanentEhrError as exc:
        count("EhrPermanentError")
        _park(record, exc)
        return
    except EhrError as exc:
        count("EhrRetryableError")
        raise _retry_later(record, exc.reason, exc.retry_after) from None
    except LineageNotYetKnown:
        raise _retry_later(record, "lineage_not_yet_known") from None
    except LineageBusyError as exc:
        raise _retry_later(record, "lineage_busy", delay=min(BUSY_BACKOFF_SECONDS, int(exc.retry_after) + 1)) from None
    except (StateConflictError, StateStoreUnavailableError, AuditUnavailableError) as exc:
        raise _retry_later(record, type(exc).__name__) from None
    if result.outcome == "verified":
        _count_drift(result.note)
    else:
        metric = {"applied": "EventApplied", "recorded": "EventRecorded", "deferred": "EventDeferred"}.get(
            result.outcome, "EventSkipped"
        )
        count(metric)
    if result.note == "ehr_corrected":
        count("DriftRepaired")  # an earlier attempt had left an older projection in the EHR
    if result.note.startswith(EHR_CONFLICT):
        count("EhrConflict")  # written although the slot is taken in the EHR (on_conflict: write_and_flag)
    if result.note == "no_booking":
        count("FormWithoutBooking")  # a routing form Cal.com saw no booking follow: a lead to call back
    if result.outcome != "duplicate":  # a replay served from the idempotency record was counted the first time
        _count_rule_violations(result.rule_warnings)  # written although they break a rule (warn / accepted)
    logger.info(
        "synced",
        extra={
            "outcome": result.outcome,
            "trigger": result.trigger,
            "lineage": result.lineage_hash[:16],
            **({"note": result.note} if result.note else {}),
            **({"rules": ",".join(result.rule_warnings)} if result.rule_warnings else {}),
        },
    )


def _count_drift(note: str) -> None:
    """Metrics of a drift check (`note` = kind[:fields]); names only, never values."""
    count("DriftChecked")
    kind = note.split(":", 1)[0]
    if kind == "repaired":
        count("DriftRepaired")
    elif kind in ("bridge_stale", "ehr_changed", "unmarked", "missing"):
        count("DriftFound")


def record_handler(record: SQSRecord, lambda_context: LambdaContext | None = None) -> None:
    logger.append_keys(message_id=record.message_id)
    settings = sync_settings()
    if not has_time_for_one_more(
        lambda_context, ehr_timeout_seconds=settings.ehr_timeout_seconds, margin_seconds=settings.time_margin_seconds
    ):
        raise _retry_later(record, "invocation_time_low")
    _handle(record)


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    guard = _runtime().idempotency
    if guard is not None:
        guard.register_lambda_context(context)
    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    return dict(response)
