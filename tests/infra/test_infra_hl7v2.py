"""The hl7v2 profile in the stack: VPC mode required, the interface engine's address in context, the sync
function's only MLLP egress to it, a VPN gateway for the site-to-site VPN, and the nag gate still clean."""

from __future__ import annotations

from typing import Any

import pytest

from infra.deployment import ConfigError, config_from_context
from tests.support.synth import SynthFactory

pytestmark = pytest.mark.infra

ENGINE = "mllps://10.20.0.15:6661"


@pytest.fixture(scope="session")
def hl7v2(synth_config: SynthFactory) -> Any:
    return synth_config(stage="staging", vpc="true", ehrProfile="hl7v2", ehrBaseUrl=ENGINE)


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"ehrProfile": "hl7v2", "ehrBaseUrl": ENGINE}, "needs -c vpc=true"),
        ({"ehrProfile": "hl7v2"}, "must be mllps://"),
        ({"ehrProfile": "hl7v2", "ehrBaseUrl": "https://ehr.example.org/fhir", "vpc": "true"}, "must be mllps://"),
        ({"ehrProfile": "hl7v2", "ehrBaseUrl": "mllp://10.20.0.15:2575", "vpc": "true"}, "mllpPlaintext=true"),
        ({"ehrProfile": "hl7v2", "ehrBaseUrl": "mllps://engine.hospital.internal:6661", "vpc": "true"}, "mllpPeerCidr"),
        ({"ehrProfile": "hl7v2", "ehrBaseUrl": ENGINE, "vpc": "true", "mllpPeerCidr": "10.0.0.0/99"}, "IPv4 CIDR"),
        ({"ehrBaseUrl": ENGINE}, "must start with https://"),
    ],
)
def test_given_incomplete_hl7v2_context_then_synth_refuses_naming_the_key(
    context: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_context(context)


def test_given_a_named_engine_then_its_cidr_comes_from_context() -> None:
    config = config_from_context(
        {
            "ehrProfile": "hl7v2",
            "ehrBaseUrl": "mllp://engine.hospital.internal:2575",
            "vpc": "true",
            "mllpPlaintext": "true",
            "mllpPeerCidr": "10.20.0.0/28",
        }
    )
    assert config.mllp_peer_cidr == "10.20.0.0/28" and config.hl7v2_endpoints[0].mllp_port == 2575


def test_given_hl7v2_then_only_the_sync_function_may_open_mllp_and_only_to_the_engine(hl7v2: Any) -> None:
    groups = hl7v2.resources("AWS::EC2::SecurityGroup")
    mllp = [g for g in groups.values() if "MLLP" in g["Properties"]["GroupDescription"]]
    assert len(mllp) == 1
    assert mllp[0]["Properties"]["SecurityGroupEgress"] == [
        {
            "CidrIp": "10.20.0.15/32",
            "Description": "MLLP to the interface engine",
            "FromPort": 6661,
            "IpProtocol": "tcp",
            "ToPort": 6661,
        }
    ]
    mllp_id = next(k for k, g in groups.items() if "MLLP" in g["Properties"]["GroupDescription"])
    functions = hl7v2.resources("AWS::Lambda::Function")
    sync_id = hl7v2.logical_id(hl7v2.stack.sync.function)
    ours = {hl7v2.logical_id(f) for f in hl7v2.stack.functions.all}
    for logical_id in ours:
        refs = functions[logical_id]["Properties"]["VpcConfig"]["SecurityGroupIds"]
        has_mllp = any(r.get("Fn::GetAtt", [None])[0] == mllp_id for r in refs)
        assert has_mllp == (logical_id == sync_id), logical_id
    env = functions[sync_id]["Properties"]["Environment"]["Variables"]
    assert env["EHR_PROFILE"] == "hl7v2" and env["EHR_BASE_URL"] == ENGINE and "EHR_MLLP_PLAINTEXT" not in env


def test_given_hl7v2_then_a_vpn_gateway_propagates_routes_into_the_private_subnets(hl7v2: Any) -> None:
    assert len(hl7v2.resources("AWS::EC2::VPNGateway")) == 1
    assert len(hl7v2.resources("AWS::EC2::VPCGatewayAttachment")) >= 1
    [propagation] = hl7v2.resources("AWS::EC2::VPNGatewayRoutePropagation").values()
    assert len(propagation["Properties"]["RouteTableIds"]) == 2


def test_given_hl7v2_then_the_tls_material_secret_is_kms_encrypted_and_the_gate_passed(hl7v2: Any) -> None:
    secret_id = hl7v2.logical_id(hl7v2.stack.secrets.ehr_auth_secret)
    secret = hl7v2.resources("AWS::SecretsManager::Secret")[secret_id]
    assert "KmsKeyId" in secret["Properties"]
    assert hl7v2.report  # synthesize() raises when a nag finding is neither fixed nor acknowledged
