"""Secrets Manager secrets (webhook signing secrets, EHR credentials, one more per extra EHR route,
the Cal.com API key) and the clinic config parameter.

Secret values never appear in the template: CloudFormation generates an initial random value once,
at creation, and operators set the real values with `aws secretsmanager put-secret-value`
(docs/deploy.md). Later deployments never touch the values.
"""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from infra.deployment import DeploymentConfig

#: Value of the clinic config parameter until the operator sets it. It is not a valid clinic
#: mapping, so the sync function fails closed (messages wait in the queue) until it is replaced.
CLINIC_CONFIG_PLACEHOLDER = (
    "# Replace with the clinic mapping (YAML or JSON): see docs/deploy.md, 'Clinic configuration'.\nunset: true\n"
)


class Secrets(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig, key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)

        #: `{"current": "...", "previous": "..."}`. Created with a random `current` that can be
        #: pasted into Cal.com as is, and an empty `previous` (used only during a rotation).
        self.webhook_secret = secretsmanager.Secret(
            self,
            "WebhookSecret",
            description=f"{stack.stack_name}: Cal.com webhook signing secrets {{current, previous}}",
            encryption_key=key,
            removal_policy=config.removal_policy,
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template='{"previous": ""}',  # noqa: S106 - a JSON shape, no value
                generate_string_key="current",
                password_length=48,
                exclude_punctuation=True,
            ),
        )
        #: `{"type": "none"}` or `{"type": "bearer", "token": "..."}`; for an hl7v2 endpoint the MLLP TLS
        #: material `{"type": "mllp-tls", "ca_pem", "client_cert_pem", "client_key_pem"}` (KMS-encrypted
        #: like every secret here). The generated initial value is deliberately not a valid document:
        #: sync refuses to call the EHR until it is set.
        self.ehr_auth_secret = secretsmanager.Secret(
            self,
            "EhrAuthSecret",
            description=f"{stack.stack_name}: EHR credentials for the sync function",
            encryption_key=key,
            removal_policy=config.removal_policy,
        )
        #: One credentials secret per extra EHR endpoint (`-c ehrRoutes=...`), same shapes and the same
        #: fail-closed initial value as `EhrAuthSecret`; its ARN goes into the sync function's EHR_ROUTES.
        self.ehr_route_secrets: dict[str, secretsmanager.Secret] = {
            route.name: secretsmanager.Secret(
                self,
                f"EhrRouteSecret-{route.name}",
                description=f"{stack.stack_name}: EHR credentials for the sync function, route {route.name}",
                encryption_key=key,
                removal_policy=config.removal_policy,
            )
            for route in config.ehr_routes
        }
        #: `{"key": "<random>"}`: the key of the keyed hash that names people in state and audit
        #: records without PHI. Generated once by CloudFormation; changing it would orphan every
        #: existing pseudonym, so it has no rotation and nobody needs to read it but sync.
        self.pseudonym_secret = secretsmanager.Secret(
            self,
            "PseudonymSecret",
            description=f"{stack.stack_name}: pseudonymisation key (generated; never change it)",
            encryption_key=key,
            removal_policy=config.removal_policy,
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template="{}",  # noqa: S106 - a JSON shape, no value
                generate_string_key="key",
                password_length=64,
                exclude_punctuation=True,
            ),
        )
        #: `{"api_key": "cal_live_..."}`: the Cal.com API v2 key the reconcile function lists bookings
        #: with. Created with an empty `api_key` (plus a random filler CloudFormation requires), so
        #: reconcile fails closed (ReconcileFailed, no request to Cal.com) until the operator sets it.
        self.calcom_api_secret = secretsmanager.Secret(
            self,
            "CalcomApiSecret",
            description=f"{stack.stack_name}: Cal.com API v2 key for the reconcile function {{api_key}}",
            encryption_key=key,
            removal_policy=config.removal_policy,
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template='{"api_key": ""}',  # noqa: S106 - a JSON shape, no value
                generate_string_key="unset",
                password_length=16,
                exclude_punctuation=True,
            ),
        )
        #: The clinic mapping, unless it comes from AppConfig (`-c clinicConfigSource=appconfig:...`).
        self.clinic_config: ssm.StringParameter | None = None
        if config.clinic_config_appconfig is None:
            self.clinic_config = ssm.StringParameter(
                self,
                "ClinicConfig",
                description=f"{stack.stack_name}: clinic mapping for the sync function (YAML or JSON)",
                string_value=self._clinic_config_value(config),
                # Mappings can outgrow the 4 KB standard tier; intelligent tiering switches when needed.
                tier=ssm.ParameterTier.INTELLIGENT_TIERING,
            )

    @property
    def all_secrets(self) -> tuple[secretsmanager.Secret, ...]:
        return (
            self.webhook_secret,
            self.ehr_auth_secret,
            *self.ehr_route_secrets.values(),
            self.pseudonym_secret,
            self.calcom_api_secret,
        )

    @staticmethod
    def _clinic_config_value(config: DeploymentConfig) -> str:
        """With `-c clinicConfigFile=...` the file is deployed; otherwise a placeholder the operator
        overwrites once. A deploy changes the parameter only when this value changes."""
        if config.clinic_config_file is None:
            return CLINIC_CONFIG_PLACEHOLDER
        return Path(config.clinic_config_file).read_text(encoding="utf-8")
