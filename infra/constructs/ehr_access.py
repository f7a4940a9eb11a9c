"""What a function that reads the clinic mapping or talks to the EHR gets: the same environment and the
same statements for the sync and the availability functions (public helpers, one definition each)."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.constructs.secrets import Secrets
from infra.deployment import DeploymentConfig, HealthLakeDatastore

#: What Powertools' `get_app_config` calls (AppConfig Data: a session, then the latest configuration).
APPCONFIG_READ_ACTIONS = ("appconfig:StartConfigurationSession", "appconfig:GetLatestConfiguration")


def clinic_config_source(config: DeploymentConfig, secrets: Secrets) -> str:
    """CLINIC_CONFIG_SOURCE, the same for every function that reads the mapping (and the stack output)."""
    appconfig = config.clinic_config_appconfig
    if appconfig is not None:
        return appconfig.uri
    assert secrets.clinic_config is not None  # created whenever AppConfig is not the source
    return f"ssm:{secrets.clinic_config.parameter_name}"


def clinic_config_statement(scope: Construct, config: DeploymentConfig, secrets: Secrets) -> iam.PolicyStatement:
    """Reading the clinic mapping: that AppConfig profile, or the SSM parameter."""
    appconfig = config.clinic_config_appconfig
    if appconfig is not None:
        arn = cdk.Stack.of(scope).format_arn(
            service="appconfig",
            resource="application",
            resource_name=(
                f"{appconfig.application_id}/environment/{appconfig.environment_id}"
                f"/configuration/{appconfig.profile_id}"
            ),
        )
        return iam.PolicyStatement(sid="ReadClinicConfig", actions=list(APPCONFIG_READ_ACTIONS), resources=[arn])
    assert secrets.clinic_config is not None
    return iam.PolicyStatement(
        sid="ReadClinicConfig", actions=["ssm:GetParameter"], resources=[secrets.clinic_config.parameter_arn]
    )


def healthlake_arn(scope: Construct, store: HealthLakeDatastore) -> str:
    """`arn:<partition>:healthlake:<region of the URL>:<this account>:datastore/fhir/<data store id>`."""
    return cdk.Stack.of(scope).format_arn(
        service="healthlake",
        region=store.region,
        resource="datastore",
        resource_name=f"fhir/{store.datastore_id}",
    )


def ehr_routes_json(scope: Construct, config: DeploymentConfig, secrets: Secrets) -> str:
    """EHR_ROUTES (`shared.settings.EhrRoute`): one endpoint per route, with its own credentials secret."""
    return cdk.Stack.of(scope).to_json_string(
        {
            route.name: {
                "base_url": route.base_url,
                "profile": route.profile,
                "auth_secret_arn": secrets.ehr_route_secrets[route.name].secret_arn,
                **({"mllp_plaintext": True} if route.profile == "hl7v2" and config.mllp_plaintext else {}),
            }
            for route in config.ehr_routes
        }
    )
