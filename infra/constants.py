"""Names, limits and budgets for the infrastructure, in one place.

Every number here is referenced by name from the constructs, the tests and docs/deploy.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from shared.contracts import deployment, metrics, queue

# --- Paths ---------------------------------------------------------------------------------------
REPO_ROOT: Final = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR: Final = REPO_ROOT / "functions"
SHARED_DIR: Final = REPO_ROOT / "shared"
LAMBDA_LOCK: Final = REPO_ROOT / "requirements" / "lambda.lock"

# --- Naming --------------------------------------------------------------------------------------
APP_NAME: Final = "CalEhrBridge"
STAGES: Final = ("staging", "prod")
DEFAULT_STAGE: Final = "staging"
WEBHOOK_PATH: Final = ("webhooks", "calcom")
SIGNATURE_HEADER: Final = "X-Cal-Signature-256"

# --- Lambda runtime --------------------------------------------------------------------------------
# 3.13 (not 3.14) so that the layer's .pyc files can be compiled by the build machine's interpreter;
# the bundler refuses to run under any other minor version.
PYTHON_MINOR: Final = (3, 13)
# manylinux2014 first (what most wheels ship); the newer tags let pip fall back to wheels that need a
# newer glibc, which the python3.13 runtime (Amazon Linux 2023, glibc 2.34) has.
PIP_PLATFORMS: Final = ("manylinux2014_aarch64", "manylinux_2_28_aarch64", "manylinux_2_34_aarch64")
# Provided by the Lambda Python runtime; never shipped in the layer.
RUNTIME_PROVIDED_PACKAGES: Final = ("boto3", "botocore", "s3transfer")
# SMART Backend Services' signing (`shared.ehr.auth.jws`): ~5 MB zipped, so it ships in a second layer that
# only the functions talking to the EHR get, and only with `-c ehrSmartAuth=true`.
SMART_LAYER_PACKAGES: Final = ("cryptography", "cffi", "pycparser")

# --- Names shared with the functions ------------------------------------------------------------
# Metric names, services and their alarms are declared once in `shared.contracts.metrics`; table keys and
# attributes in `shared.contracts.tables`; these deployment names in `shared.contracts.deployment` and the
# retry backoff in `shared.contracts.queue`. They are imported here, never written a second time.
# Each stage has its own metrics namespace, `CalEhrBridge/<stage>` (DeploymentConfig.metrics_namespace).
METRICS_NAMESPACE: Final = metrics.NAMESPACE

# --- SnapStart -----------------------------------------------------------------------------------
# Ingest and sync run with SnapStart: each deploy publishes a version, snapshotted after INIT (the
# imports: ~250-400 ms of boto3, pydantic and Powertools), and this alias points at it; the API and
# the queue's event source invoke the alias, never $LATEST (which SnapStart does not cover).
LIVE_ALIAS: Final = deployment.LIVE_ALIAS
SNAPSTART_FUNCTIONS: Final = ("ingest", "sync")
#: Regions where Lambda offers SnapStart for Python (AWS Lambda Developer Guide, "Improving startup
#: performance with Lambda SnapStart", supported Regions; the same list cfn-lint's E2530 checks).
#: Elsewhere (GovCloud, China, newer regions) the functions run without it: the version and the `live`
#: alias are still published, so the API and the event source are wired the same way in every region.
SNAPSTART_REGIONS: Final = frozenset(
    {
        "us-east-1", "us-east-2", "us-west-1", "us-west-2", "af-south-1", "ap-east-1", "ap-south-1",
        "ap-south-2", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-southeast-1",
        "ap-southeast-2", "ap-southeast-3", "ap-southeast-4", "ap-southeast-5", "ap-southeast-7",
        "ca-central-1", "ca-west-1", "eu-central-1", "eu-central-2", "eu-west-1", "eu-west-2",
        "eu-west-3", "eu-south-1", "eu-south-2", "eu-north-1", "me-south-1", "me-central-1",
        "il-central-1", "mx-central-1", "sa-east-1",
    }
)  # fmt: skip

# --- Tracing -------------------------------------------------------------------------------------
# The API stage is traced for timing and status only. X-Ray's default rule (the first request each
# second, then 5 %) traces nearly every webhook at clinic volumes; this rule traces 1 % and no
# reservoir, which still shows latency distributions and errors (docs/performance.md, "Cost").
XRAY_API_SAMPLING_RATE: Final = 0.01
XRAY_API_SAMPLING_RESERVOIR: Final = 0
XRAY_API_SAMPLING_PRIORITY: Final = 100

# --- Functions -----------------------------------------------------------------------------------
LOG_LEVEL: Final = "INFO"
MAX_BODY_BYTES: Final = 256 * 1024
INGEST_MEMORY_MB: Final = 512
INGEST_TIMEOUT_SECONDS: Final = 10
INGEST_RESERVED_CONCURRENCY: Final = 20
# The sync mostly waits on the EHR and DynamoDB: 256 MB (a seventh of a vCPU) keeps its own work at
# ~70 ms per event and halves the GB-seconds of waiting (docs/performance.md, "Cost").
SYNC_MEMORY_MB: Final = 256
EHR_TIMEOUT_SECONDS: Final = 10
SYNC_TIMEOUT_SECONDS: Final = 90
# A worker's lease on a lineage outlives the function's timeout: a live worker never loses it, and a
# crashed one's expires (docs/sync-semantics.md, "Write protocol").
LINEAGE_LEASE_SECONDS: Final = SYNC_TIMEOUT_SECONDS + 30
# One message per invocation. A batch's records run one after another, so under a burst the last of a batch
# of five waited for four EHR writes while the rest of the concurrency sat idle (webhook → chart p99 +13 EHR
# round trips in a burst of ten, +2.5 with one; docs/performance.md). The invocations cost the same: at
# clinic volumes a batch held one message anyway.
SYNC_BATCH_SIZE: Final = 1
# At most this many sync invocations talk to the EHR at once. The reserved concurrency equals it
# so the event source never gets throttled by Lambda and never starves the rest of the account.
SYNC_MAX_CONCURRENCY: Final = 5
SYNC_RESERVED_CONCURRENCY: Final = SYNC_MAX_CONCURRENCY

# --- Reconcile (scheduled; docs/reconciliation.md) --------------------------------------------------
# EventBridge schedule expression; context `reconcileRate` overrides it (a `rate(...)` no shorter
# than the timeout, so that one run ends before the next starts).
DEFAULT_RECONCILE_RATE: Final = "rate(15 minutes)"
RECONCILE_MEMORY_MB: Final = 512
RECONCILE_TIMEOUT_SECONDS: Final = 5 * 60
# Runs must never overlap: the cursor write is conditional, an overlapping run would only stop.
RECONCILE_RESERVED_CONCURRENCY: Final = 1
# A failed run is not retried by Lambda: the next scheduled run is the retry (it resumes from the
# cursor). The failed event goes to the async-failure queue (FunctionFailures).
RECONCILE_ASYNC_RETRY_ATTEMPTS: Final = 0
CALCOM_API_BASE_URL: Final = deployment.CALCOM_API_BASE_URL
RECONCILE_LOOKBACK_HOURS: Final = 24
RECONCILE_MAX_RPS: Final = 2

# --- Operations console widgets (the dashboard's custom widgets; docs/deploy.md, "Operations console") --
CONSOLE_MEMORY_MB: Final = 512
# A search without a uid scans the audit trail (up to CONSOLE_SCAN_LIMIT records); CloudWatch waits at most
# a minute for a custom widget.
CONSOLE_TIMEOUT_SECONDS: Final = 30
CONSOLE_RESERVED_CONCURRENCY: Final = 2
CONSOLE_SCAN_LIMIT: Final = 20_000
# --- Availability (EHR-first appointments -> busy feeds; docs/availability.md) ----------------------
AVAILABILITY_RATE: Final = "rate(5 minutes)"
AVAILABILITY_MEMORY_MB: Final = 512
AVAILABILITY_TIMEOUT_SECONDS: Final = 4 * 60
# One run at a time: two would only write the same feeds twice.
AVAILABILITY_RESERVED_CONCURRENCY: Final = 1
AVAILABILITY_HORIZON_DAYS: Final = 90
AVAILABILITY_FULL_SWEEP_MINUTES: Final = 60
FEED_PATH: Final = "feeds"
FEED_MEMORY_MB: Final = 256
FEED_TIMEOUT_SECONDS: Final = 10
# Cal.com refetches feeds on availability checks; this caps the table's read rate, not Cal.com.
FEED_RESERVED_CONCURRENCY: Final = 10

# --- Audit archive (WORM copy of the audit table; docs/deploy.md, "Audit archive") ------------------
ARCHIVE_MEMORY_MB: Final = 256
ARCHIVE_TIMEOUT_SECONDS: Final = 60
# One shard rarely needs more; the event source never runs more than one batch per shard at a time.
ARCHIVE_RESERVED_CONCURRENCY: Final = 2
ARCHIVE_BATCH_SIZE: Final = 100
# Stream records live 24 h: retry (bisecting the batch) until then; the lag alarm pages long before.
ARCHIVE_STREAM_RETRY_ATTEMPTS: Final = 10_000
# How long each archived record is locked (S3 Object Lock, COMPLIANCE) and kept; context
# `auditArchiveRetentionDays`. Prod: six years, the HIPAA retention for required documentation
# (45 CFR 164.316(b)(2)); staging: a week, so a torn-down staging bucket can be emptied soon.
AUDIT_ARCHIVE_RETENTION_DAYS: Final = {"prod": 6 * 365 + 2, "staging": 7}
MIN_AUDIT_ARCHIVE_RETENTION_DAYS: Final = 2
MAX_AUDIT_ARCHIVE_RETENTION_DAYS: Final = 100 * 365

# --- Review items ------------------------------------------------------------------------------------
# Days a parked message keeps its body (PHI); context `reviewBodyRetentionDays`, sync env
# REVIEW_BODY_RETENTION_DAYS (the sync's default too).
REVIEW_BODY_RETENTION_DAYS: Final = deployment.REVIEW_BODY_RETENTION_DAYS
MAX_REVIEW_BODY_RETENTION_DAYS: Final = 3650

# --- Queue retry budget (see docs/deploy.md, "Retry budget") ---------------------------------------
# AWS's guidance for SQS event sources: visibility timeout >= 6 x function timeout.
QUEUE_VISIBILITY_SECONDS: Final = 6 * SYNC_TIMEOUT_SECONDS  # 540 s
# Receives before a message is dead-lettered. With the queue's own visibility timeout alone this is
# 100 x 540 s = 15 h; with the sync function's backoff (10 s doubling, capped at 900 s) about 23.6 h.
MAX_RECEIVE_COUNT: Final = 100
# The sync function's backoff (its SYNC_BACKOFF_* settings default to these): 10 s doubling, capped at 900 s.
RETRY_BACKOFF_BASE_SECONDS: Final = queue.BACKOFF_BASE_SECONDS
RETRY_BACKOFF_CAP_SECONDS: Final = queue.BACKOFF_CAP_SECONDS
QUEUE_RETENTION_DAYS: Final = 14
MIN_RETRY_BUDGET_HOURS: Final = 12

# --- API -----------------------------------------------------------------------------------------
API_RATE_LIMIT_RPS: Final = 50
API_BURST_LIMIT: Final = 100
# WAF rate-based rule: requests per source IP per 5 minutes.
WAF_RATE_LIMIT_PER_5_MIN: Final = 2000

# --- Alarms --------------------------------------------------------------------------------------
OLDEST_MESSAGE_AGE_ALARM_SECONDS: Final = 15 * 60
ALARM_PERIOD_MINUTES: Final = 5
# WebhookSecretMismatch: any signature rejection in a window in which no delivery was verified.
# Cal.com does not retry, so one such window can be a lost booking (a botched secret rotation).
SIGNATURE_MISMATCH_WINDOW_MINUTES: Final = 15
# EHR error rates (share of sync outcomes), independent of queue age; a minimum count keeps a single
# failure at night from paging.
EHR_RETRYABLE_ERROR_RATE_PERCENT: Final = 25
EHR_RETRYABLE_MIN_ERRORS: Final = 5
EHR_RETRYABLE_EVALUATION_PERIODS: Final = 2
EHR_PERMANENT_ERROR_RATE_PERCENT: Final = 10
EHR_PERMANENT_MIN_ERRORS: Final = 3
# Requests WAF blocked in 5 minutes (all rules); a spike is an attack, or WAF refusing Cal.com itself.
WAF_BLOCKED_SPIKE_PER_5_MIN: Final = 50
# Open review items: too many, or one left alone too long.
REVIEW_BACKLOG_MAX_OPEN_ITEMS: Final = 20
REVIEW_BACKLOG_MAX_AGE_HOURS: Final = 24
# The archive function's stream iterator age: how far the WORM copy trails the audit table.
AUDIT_ARCHIVE_MAX_LAG_SECONDS: Final = 60 * 60
