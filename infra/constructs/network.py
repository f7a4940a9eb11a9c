"""Optional VPC mode (`-c vpc=true`): functions run in private subnets.

Private subnets reach AWS services through VPC endpoints (DynamoDB and S3 gateway endpoints, no charge;
SQS, Secrets Manager and SSM interface endpoints: the only AWS APIs the functions call besides those) and
the EHR and the Cal.com API through NAT gateways. KMS and CloudWatch Logs need no endpoint: the functions
never call them (DynamoDB, SQS and Secrets Manager use the keys on their side; Lambda delivers the logs,
EMF metrics included, from outside the VPC). VPC flow logs go to a KMS-encrypted log group.

With an `hl7v2` EHR endpoint the VPC also gets a virtual private gateway (route propagation into the
private subnets) for the site-to-site VPN to the interface engine (docs/ehr-support.md), and the sync
function a second security group whose only egress is the engine's address and MLLP port.
"""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.deployment import DeploymentConfig

#: Interface endpoints of the AWS APIs the functions call (each costs an hourly fee per AZ).
INTERFACE_ENDPOINTS = {
    "Sqs": ec2.InterfaceVpcEndpointAwsService.SQS,
    "SecretsManager": ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
    "Ssm": ec2.InterfaceVpcEndpointAwsService.SSM,
}
#: Gateway endpoints (no charge): DynamoDB (the tables) and S3 (the audit archive's Object Lock writes).
GATEWAY_ENDPOINTS = {
    "DynamoDb": ec2.GatewayVpcEndpointAwsService.DYNAMODB,
    "S3": ec2.GatewayVpcEndpointAwsService.S3,
}


class Network(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: DeploymentConfig, telemetry_key: kms.IKey
    ) -> None:
        super().__init__(scope, construct_id)
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=2,
            nat_gateways=config.nat_gateways,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="public", subnet_type=ec2.SubnetType.PUBLIC, map_public_ip_on_launch=False
                ),
                ec2.SubnetConfiguration(name="private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            ],
            gateway_endpoints={
                name: ec2.GatewayVpcEndpointOptions(service=service) for name, service in GATEWAY_ENDPOINTS.items()
            },
            # The customer gateway and VPN connection need the site's public IP and pre-shared keys: the
            # operator creates them against this gateway (docs/ehr-support.md, "Site-to-site VPN").
            vpn_gateway=bool(config.hl7v2_endpoints),
            vpn_route_propagation=(
                [ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)]
                if config.hl7v2_endpoints
                else None
            ),
        )
        flow_logs = logs.LogGroup(
            self,
            "FlowLogs",
            encryption_key=telemetry_key,
            retention=config.log_retention,
            removal_policy=config.removal_policy,
        )
        self.flow_log = self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs),
            traffic_type=ec2.FlowLogTrafficType.ALL,
        )
        #: Functions only open outbound connections (HTTPS to endpoints and the EHR).
        self.function_security_group = ec2.SecurityGroup(
            self,
            "FunctionSecurityGroup",
            vpc=self.vpc,
            description="Cal EHR Bridge functions: no inbound, HTTPS outbound",
            allow_all_outbound=False,
        )
        self.function_security_group.add_egress_rule(
            ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS to AWS endpoints and the EHR"
        )
        #: The sync function only: MLLP to the interface engine's address and port(s), nothing else.
        self.mllp_security_group: ec2.SecurityGroup | None = None
        if config.hl7v2_endpoints and config.mllp_peer_cidr:
            self.mllp_security_group = ec2.SecurityGroup(
                self,
                "MllpSecurityGroup",
                vpc=self.vpc,
                description="Cal EHR Bridge sync: MLLP to the HL7 v2 interface engine only",
                allow_all_outbound=False,
            )
            for port in sorted({e.mllp_port for e in config.hl7v2_endpoints if e.mllp_port}):
                self.mllp_security_group.add_egress_rule(
                    ec2.Peer.ipv4(config.mllp_peer_cidr), ec2.Port.tcp(port), "MLLP to the interface engine"
                )
        private = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
        for name, service in INTERFACE_ENDPOINTS.items():
            endpoint = self.vpc.add_interface_endpoint(
                name, service=service, subnets=private, private_dns_enabled=True, open=False
            )
            # Only the functions may reach the endpoints (not the whole VPC CIDR).
            endpoint.connections.allow_default_port_from(self.function_security_group)
