"""AWS list prices the cost model uses: one table, each price with its unit and the pricing page it is from.

us-east-1, on-demand, no free tier (the always-free allowances are a line of their own in the bill,
`bench.bill.free_tier_credit`). Not fetched by any script: re-check them on the pages before quoting a
figure to a clinic. `PRICES_AS_OF` is when they were last read from those pages.
"""

from __future__ import annotations

from dataclasses import dataclass

PRICES_AS_OF = "2025-06 (us-east-1 list prices, read from the AWS pricing pages named per price)"


@dataclass(frozen=True)
class Price:
    usd: float
    unit: str
    page: str


_APIGW = "https://aws.amazon.com/api-gateway/pricing/"
_WAF = "https://aws.amazon.com/waf/pricing/"
_XRAY = "https://aws.amazon.com/xray/pricing/"
_LAMBDA = "https://aws.amazon.com/lambda/pricing/"
_SQS = "https://aws.amazon.com/sqs/pricing/"
_DDB = "https://aws.amazon.com/dynamodb/pricing/on-demand/"
_KMS = "https://aws.amazon.com/kms/pricing/"
_SM = "https://aws.amazon.com/secrets-manager/pricing/"
_CW = "https://aws.amazon.com/cloudwatch/pricing/"
_VPC = "https://aws.amazon.com/vpc/pricing/"
_PRIVATELINK = "https://aws.amazon.com/privatelink/pricing/"
_BACKUP = "https://aws.amazon.com/backup/pricing/"
_S3 = "https://aws.amazon.com/s3/pricing/"
_SSM = "https://aws.amazon.com/systems-manager/pricing/"

PRICE: dict[str, Price] = {
    # --- front door
    "apigw_rest_request": Price(3.50 / 1e6, "per REST API request (first 333M a month)", _APIGW),
    "apigw_http_request": Price(1.00 / 1e6, "per HTTP API request (for comparison only)", _APIGW),
    "waf_web_acl_month": Price(5.00, "per web ACL per month", _WAF),
    "waf_rule_month": Price(1.00, "per rule (a managed rule group is one) per web ACL per month", _WAF),
    "waf_request": Price(0.60 / 1e6, "per request inspected", _WAF),
    "xray_trace": Price(5.00 / 1e6, "per trace recorded", _XRAY),
    # --- compute
    "lambda_request": Price(0.20 / 1e6, "per invocation", _LAMBDA),
    "lambda_arm_gb_second": Price(0.0000133334, "per GB-second, arm64 (first 7.5B GB-s a month)", _LAMBDA),
    "lambda_x86_gb_second": Price(0.0000166667, "per GB-second, x86_64", _LAMBDA),
    "snapstart_cache_gb_second": Price(
        0.0000015046, "SnapStart (Python) cache, per GB-second a published version is active", _LAMBDA
    ),
    "snapstart_restore_gb": Price(0.0001397998, "SnapStart (Python) restore, per GB restored", _LAMBDA),
    # --- queue, tables, storage
    "sqs_fifo_request": Price(0.50 / 1e6, "per FIFO request (each 64 KB chunk of a payload is one)", _SQS),
    "sqs_standard_request": Price(0.40 / 1e6, "per standard-queue request", _SQS),
    "ddb_wru": Price(0.625 / 1e6, "per on-demand write request unit (1 KB)", _DDB),
    "ddb_rru": Price(0.125 / 1e6, "per on-demand read request unit (4 KB strongly consistent)", _DDB),
    "ddb_storage_gb_month": Price(0.25, "per GB-month of table storage (Standard class)", _DDB),
    "ddb_pitr_gb_month": Price(0.20, "per GB-month of point-in-time recovery (continuous backups)", _DDB),
    "backup_ddb_warm_gb_month": Price(0.10, "AWS Backup, DynamoDB warm storage per GB-month", _BACKUP),
    "backup_ddb_cold_gb_month": Price(0.03, "AWS Backup, DynamoDB cold storage per GB-month", _BACKUP),
    "s3_standard_gb_month": Price(0.023, "S3 Standard storage per GB-month (first 50 TB)", _S3),
    "s3_put": Price(0.005 / 1000, "per PUT, COPY, POST or LIST request", _S3),
    # --- keys and secrets
    "kms_key_month": Price(1.00, "per customer managed key per month", _KMS),
    "kms_request": Price(0.03 / 10_000, "per KMS API request", _KMS),
    "secret_month": Price(0.40, "per secret per month", _SM),
    "secret_api_call": Price(0.05 / 10_000, "per Secrets Manager API call", _SM),
    # --- observability
    "cw_custom_metric_month": Price(
        0.30, "per custom metric (name x dimension values) per month, first 10,000; prorated by the hour", _CW
    ),
    "cw_alarm_metric_month": Price(0.10, "per standard-resolution alarm metric per month", _CW),
    "cw_high_res_alarm_metric_month": Price(0.30, "per high-resolution (10/30 s) alarm metric per month", _CW),
    "cw_dashboard_month": Price(3.00, "per custom dashboard per month", _CW),
    "cw_logs_ingest_gb": Price(0.50, "CloudWatch Logs standard ingestion (and vended logs, first 10 TB) per GB", _CW),
    "cw_logs_storage_gb_month": Price(0.03, "CloudWatch Logs archive storage per GB-month (compressed)", _CW),
    "cw_logs_data_protection_gb": Price(0.12, "CloudWatch Logs data protection, per GB scanned", _CW),
    # --- configuration
    "ssm_advanced_parameter_month": Price(0.05, "per advanced parameter (over 4 KB) per month", _SSM),
    "ssm_advanced_api_interaction": Price(0.05 / 10_000, "per API interaction with an advanced parameter", _SSM),
    # --- network (VPC mode)
    "nat_gateway_hour": Price(0.045, "per NAT gateway-hour", _VPC),
    "nat_gateway_gb": Price(0.045, "per GB processed by a NAT gateway", _VPC),
    "public_ipv4_hour": Price(0.005, "per public IPv4 address-hour (a NAT gateway's Elastic IP too)", _VPC),
    "interface_endpoint_az_hour": Price(0.01, "per interface VPC endpoint per AZ-hour", _PRIVATELINK),
    "interface_endpoint_gb": Price(0.01, "per GB processed by interface endpoints (first PB)", _PRIVATELINK),
}

#: The always-free allowances that apply to this stack, each a monthly quantity in the unit of the price it
#: offsets (AWS Free Tier, "always free"; per account and region, shared with everything else in it).
FREE_TIER: dict[str, float] = {
    "lambda_request": 1_000_000,
    "lambda_arm_gb_second": 400_000,  # shared by both architectures
    "sqs_fifo_request": 1_000_000,  # shared by both queue kinds
    "kms_request": 20_000,
    "cw_custom_metric_month": 10,
    "cw_alarm_metric_month": 10,
    "cw_dashboard_month": 3,  # custom dashboards of up to 50 metrics each
    "cw_logs_ingest_gb": 5,
    "xray_trace": 100_000,
    "ddb_storage_gb_month": 25,
}
#: A dashboard of more metrics than this is not covered by the free tier.
FREE_TIER_DASHBOARD_METRICS = 50

HOURS_PER_MONTH = 730
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600


def usd(name: str, quantity: float) -> float:
    """`quantity` units of the price `name`, in USD."""
    return PRICE[name].usd * quantity
