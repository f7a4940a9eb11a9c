"""Stage defaults (prod keeps data, staging tears down) and the VPC switch."""

from __future__ import annotations

import pytest

from infra.constructs.network import GATEWAY_ENDPOINTS, INTERFACE_ENDPOINTS
from infra.deployment import ConfigError, config_from_context
from tests.support.synth import Synth

pytestmark = pytest.mark.infra

_DATA_TYPES = (
    "AWS::DynamoDB::Table",
    "AWS::SQS::Queue",
    "AWS::SecretsManager::Secret",
    "AWS::KMS::Key",
    "AWS::Logs::LogGroup",
)


def test_given_prod_then_data_is_retained_and_tables_are_deletion_protected(prod: Synth) -> None:
    for resource_type in _DATA_TYPES:
        for logical_id, resource in prod.resources(resource_type).items():
            assert resource["DeletionPolicy"] == "Retain", logical_id
            assert resource["UpdateReplacePolicy"] == "Retain", logical_id
    for table in prod.resources("AWS::DynamoDB::Table").values():
        assert table["Properties"]["DeletionProtectionEnabled"] is True
    assert prod.stack.termination_protection is True
    (vault,) = prod.resources("AWS::Backup::BackupVault").values()
    assert "AccessPolicy" in vault["Properties"]  # recovery points cannot be deleted


def test_given_staging_then_data_can_be_torn_down(staging: Synth) -> None:
    for resource_type in _DATA_TYPES:
        for logical_id, resource in staging.resources(resource_type).items():
            if logical_id == staging.logical_id(staging.stack.api.execution_logs):
                continue
            assert resource["DeletionPolicy"] == "Delete", logical_id
    for table in staging.resources("AWS::DynamoDB::Table").values():
        assert table["Properties"]["DeletionProtectionEnabled"] is False
    assert staging.stack.termination_protection is False


def test_given_default_context_then_no_vpc(staging: Synth) -> None:
    assert staging.resources("AWS::EC2::VPC") == {}
    for function in staging.stack.functions.all:
        assert "VpcConfig" not in staging.resources("AWS::Lambda::Function")[staging.logical_id(function)]["Properties"]


def test_given_vpc_true_then_functions_run_in_private_subnets_with_endpoints_and_nat(prod_vpc_no_waf: Synth) -> None:
    synth = prod_vpc_no_waf
    assert len(synth.resources("AWS::EC2::VPC")) == 1
    private_subnets = [
        s
        for s in synth.resources("AWS::EC2::Subnet").values()
        if {"Key": "aws-cdk:subnet-type", "Value": "Private"} in s["Properties"]["Tags"]
    ]
    assert len(private_subnets) == 2
    for subnet in synth.resources("AWS::EC2::Subnet").values():
        assert subnet["Properties"]["MapPublicIpOnLaunch"] is False
    assert len(synth.resources("AWS::EC2::NatGateway")) == 2  # one per AZ in prod
    endpoints = synth.resources("AWS::EC2::VPCEndpoint").values()
    services = " ".join(str(e["Properties"]["ServiceName"]) for e in endpoints)
    for service in ("sqs", "secretsmanager", "ssm", "dynamodb", "s3"):
        assert f".{service}" in services, service
    for unused in ("kms", "logs"):  # the functions never call either API (their services or Lambda do)
        assert f".{unused}'" not in services and f'.{unused}"' not in services, unused
    kinds = sorted(e["Properties"]["VpcEndpointType"] for e in endpoints)
    assert kinds == ["Gateway"] * len(GATEWAY_ENDPOINTS) + ["Interface"] * len(INTERFACE_ENDPOINTS)
    assert len(synth.resources("AWS::EC2::FlowLog")) == 1
    security_group = synth.logical_id(synth.stack.network.function_security_group) if synth.stack.network else ""
    for function in synth.stack.functions.all:
        vpc_config = synth.resources("AWS::Lambda::Function")[synth.logical_id(function)]["Properties"]["VpcConfig"]
        assert vpc_config["SecurityGroupIds"] == [{"Fn::GetAtt": [security_group, "GroupId"]}]
        assert len(vpc_config["SubnetIds"]) == 2


def test_given_vpc_mode_then_endpoints_admit_only_the_functions(prod_vpc_no_waf: Synth) -> None:
    ingress = prod_vpc_no_waf.resources("AWS::EC2::SecurityGroupIngress").values()
    assert ingress
    for rule in ingress:
        assert "CidrIp" not in rule["Properties"]
        assert rule["Properties"]["FromPort"] == 443


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"stage": "dev"}, "stage"),
        ({"waf": "maybe"}, "waf"),
        ({"alarmEmail": "not-an-address"}, "alarmEmail"),
        ({"alarmHttpsUrl": "http://insecure.example.org"}, "alarmHttpsUrl"),
        ({"ehrBaseUrl": "http://ehr.example.org"}, "ehrBaseUrl"),
        ({"reconcileRate": "cron(0/15 * * * ? *)"}, "reconcileRate"),
        ({"reconcileRate": "rate(1 hours)"}, "reconcileRate"),
        ({"reconcileRate": "rate(15 minute)"}, "reconcileRate"),
        ({"reconcileRate": "rate(2 minutes)"}, "reconcileRate"),  # shorter than the 5-minute timeout
    ],
)
def test_given_invalid_context_then_synth_refuses_with_the_key_name(context: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_context(context)


def test_given_list_context_then_several_alarm_recipients() -> None:
    config = config_from_context({"alarmEmail": "a@example.org, b@example.org", "vpc": "true", "waf": False})
    assert config.alarm_emails == ("a@example.org", "b@example.org")
    assert config.vpc is True
    assert config.waf is False
    assert config.stage == "staging"


@pytest.mark.parametrize(
    ("rate", "minutes"),
    [
        ("rate(15 minutes)", 15),
        ("rate(5 minutes)", 5),
        ("rate(1 hour)", 60),
        ("rate(2 hours)", 120),
        ("rate(1 day)", 1440),
    ],
)
def test_given_a_reconcile_rate_then_it_is_accepted(rate: str, minutes: int) -> None:
    config = config_from_context({"reconcileRate": rate})
    assert config.reconcile_rate == rate
    assert config.reconcile_rate_minutes == minutes
    assert config_from_context({}).reconcile_rate == "rate(15 minutes)"
