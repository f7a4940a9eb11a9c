"""What travels on the events queue besides the body: attributes, sources, the drift-check body, the backoff."""

from __future__ import annotations

from typing import Final

# --- message attributes (never PHI: names and codes) -----------------------------------------------------
#: Who put the message on the queue (`SOURCE_*`); the audit trail's `source_system`.
SOURCE_ATTRIBUTE: Final = "source"
#: The webhook's trigger as ingest read it (shown by a review item whose body never parsed).
TRIGGER_ATTRIBUTE: Final = "trigger"
#: The `enforce` booking rules an operator accepted for this message (`calehr review retry --accept-rule`).
ACCEPTED_RULES_ATTRIBUTE: Final = "acceptedRules"

#: The version of the queue message contract (`SCHEMA_ATTRIBUTE`): the body is the raw webhook.
SCHEMA_ATTRIBUTE: Final = "schema"
MESSAGE_SCHEMA: Final = "calcom-raw-v1"
#: The SHA-256 of the body (hex), next to the FIFO deduplication id.
BODY_SHA256_ATTRIBUTE: Final = "bodySha256"

# --- sources ---------------------------------------------------------------------------------------------
SOURCE_WEBHOOK: Final = "calcom-webhook"
SOURCE_RECONCILE: Final = "reconcile"
SOURCE_DRIFT_CHECK: Final = "drift-check"
SOURCE_OPERATOR_RETRY: Final = "operator-retry"

# --- the queued drift check ------------------------------------------------------------------------------
#: The one key of a drift-check body, `{"bridgeVerify": {"lineage": "<lineage>"}}` (shared/reconcile/
#: drift_checks.py writes it, shared/sync/message.py reads it). Ingest refuses bodies without
#: `triggerEvent`, so nothing from outside can enqueue one.
VERIFY_KEY: Final = "bridgeVerify"
VERIFY_TRIGGER: Final = "VERIFY"

# --- retry backoff (the sync function; infra's retry budget is computed from the same numbers) -------------
#: A retried message comes back after `BACKOFF_BASE_SECONDS * 2**(receive count - 1)`, at least the EHR's
#: Retry-After, at most `BACKOFF_CAP_SECONDS` (settings SYNC_BACKOFF_BASE_SECONDS / SYNC_BACKOFF_CAP_SECONDS).
BACKOFF_BASE_SECONDS: Final = 10
BACKOFF_CAP_SECONDS: Final = 900
#: A lineage another worker is applying: come back soon, not on the exponential schedule.
BUSY_BACKOFF_SECONDS: Final = 2
