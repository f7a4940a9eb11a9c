"""What a deployment configures and the stack, the functions and the CLI read alike."""

from __future__ import annotations

from typing import Final, Literal

#: The EHR write dialects (shared/ehr/profiles.py builds one client per profile; docs/ehr-support.md).
EhrProfileName = Literal["generic", "healthlake", "oracle", "hl7v2"]
EHR_PROFILES: Final = ("generic", "healthlake", "oracle", "hl7v2")
#: The profiles that speak FHIR; `hl7v2` sends SIU messages over MLLP instead.
FHIR_PROFILES: Final = ("generic", "healthlake", "oracle")
#: Names of the extra EHR endpoints (`EHR_ROUTES`) and of the `ehr` a clinic-mapping event type routes to.
ROUTE_NAME_PATTERN: Final = r"^[a-z][a-z0-9-]{0,31}$"
#: The endpoint configured by EHR_BASE_URL / EHR_PROFILE / EHR_AUTH_SECRET_ARN; not an `EHR_ROUTES` key.
DEFAULT_ROUTE: Final = "default"
#: Where the functions read the clinic mapping: `file:<path>`, `ssm:<parameter name>` or
#: `appconfig:<application>/<environment>/<profile>`.
CLINIC_CONFIG_SOURCE_PATTERN: Final = r"^(file:.+|ssm:.+|appconfig:[^/\s]+/[^/\s]+/[^/\s]+)$"
#: Cal.com API v2 (a stack may point at another, e.g. a self-hosted Cal.com).
CALCOM_API_BASE_URL: Final = "https://api.cal.com/v2"
#: Days a parked message keeps its body (PHI); REVIEW_BODY_RETENTION_DAYS, context `reviewBodyRetentionDays`.
REVIEW_BODY_RETENTION_DAYS: Final = 30
#: The alias of the published (SnapStart) version that the API and the queue's event source invoke.
LIVE_ALIAS: Final = "live"

# --- stack outputs the operator CLI resolves resources from (infra/stack.py declares each) -------------------
OUTPUT_QUEUE_URL: Final = "QueueUrl"
OUTPUT_DLQ_URL: Final = "DeadLetterQueueUrl"
OUTPUT_STATE_TABLE: Final = "StateTableName"
OUTPUT_REVIEW_TABLE: Final = "ReviewTableName"
OUTPUT_AUDIT_TABLE: Final = "AuditTableName"
OUTPUT_SYNC_FUNCTION: Final = "SyncFunctionName"
OUTPUT_WEBHOOK_URL: Final = "WebhookUrl"
OUTPUT_WEBHOOK_SECRET: Final = "WebhookSecretName"  # noqa: S105 - an output name
OUTPUT_CALCOM_API_SECRET: Final = "CalcomApiSecretName"  # noqa: S105 - an output name
OUTPUT_CALCOM_API_BASE_URL: Final = "CalcomApiBaseUrl"
OUTPUT_EHR_BASE_URL: Final = "EhrBaseUrl"
OUTPUT_EHR_PROFILE: Final = "EhrProfile"
OUTPUT_EHR_AUTH_SECRET: Final = "EhrAuthSecretName"  # noqa: S105 - an output name
OUTPUT_EHR_ROUTES: Final = "EhrRoutes"
OUTPUT_PSEUDONYM_SECRET: Final = "PseudonymSecretName"  # noqa: S105 - an output name
OUTPUT_AVAILABILITY_TABLE: Final = "AvailabilityTableName"
OUTPUT_FEED_BASE_URL: Final = "FeedBaseUrl"
OUTPUT_AVAILABILITY_FUNCTION: Final = "AvailabilityFunctionName"
OUTPUT_CLINIC_CONFIG_SOURCE: Final = "ClinicConfigSource"
OUTPUT_OPERATOR_READ_ONLY_ROLE: Final = "OperatorReadOnlyRoleArn"
OUTPUT_OPERATOR_ADMIN_ROLE: Final = "OperatorAdminRoleArn"
