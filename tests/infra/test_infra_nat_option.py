"""`-c natGateways=1|2` in VPC mode: the number of NAT gateways (and their Elastic IPs); refused outside VPC
mode and for any other value, naming the key."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from infra.deployment import ConfigError, config_from_context
from tests.support.synth import Synth


def test_given_one_nat_gateway_then_prod_has_one_and_both_private_subnets_route_to_it(
    synth_config: Callable[..., Synth],
) -> None:
    synth = synth_config(
        stage="prod",
        vpc="true",
        natGateways="1",
        alarmEmail="oncall@example.org",
        ehrBaseUrl="https://ehr.example.org/fhir",
    )
    nats = synth.resources("AWS::EC2::NatGateway")
    assert len(nats) == 1 and len(synth.resources("AWS::EC2::EIP")) == 1
    (nat,) = nats
    routes = [r["Properties"] for r in synth.resources("AWS::EC2::Route").values() if "NatGatewayId" in r["Properties"]]
    assert len(routes) == 2 and all(route["NatGatewayId"] == {"Ref": nat} for route in routes)


def test_given_no_nat_setting_then_prod_keeps_one_per_availability_zone() -> None:
    assert (
        config_from_context(
            {"stage": "prod", "vpc": "true", "alarmEmail": "a@b.org", "ehrBaseUrl": "https://ehr.example.org/fhir"}
        ).nat_gateways
        == 2
    )
    assert config_from_context({"stage": "staging", "vpc": "true"}).nat_gateways == 1


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"natGateways": "1"}, "natGateways' applies to VPC mode only"),
        ({"vpc": "true", "natGateways": "3"}, "natGateways' must be 1 or 2"),
        ({"vpc": "true", "natGateways": "one"}, "natGateways' must be 1 or 2"),
    ],
)
def test_given_a_wrong_nat_setting_then_the_synth_refuses_it_by_name(context: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_context({"stage": "staging", **context})
