"""The operator CLI as on-call and as an admin, against moto server with IAM enforcement switched on.

Two roles are created in moto's IAM and assumed through moto's STS; while the test runs the CLI, moto
checks every request's signature and action against the role's policy. moto does not evaluate resource
ARNs or conditions (the roles' exact policies are proven on the synthesized template in
tests/infra/test_infra_operators.py): here the point is what the CLI does with the answer — an
AccessDenied becomes one line naming the role needed, and every action is recorded under the caller's
STS identity with the session name hashed.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from cli.app import main
from tests.support.bridge import stack_target
from tests.support.fixtures import fixture_document

pytestmark = pytest.mark.integration

ACCOUNT = "123456789012"
#: What on-call's commands call (review list/show, audit, dlq redrive --dry-run, the stack outputs).
READ_ONLY_ACTIONS = [
    "sts:GetCallerIdentity",
    "cloudformation:DescribeStacks",
    "dynamodb:Scan",
    "dynamodb:Query",
    "sqs:GetQueueAttributes",
]
#: ...and what an admin's commands add (retry, discard: close the item, append the record, requeue).
ADMIN_ACTIONS = [*READ_ONLY_ACTIONS, "dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:PutItem", "sqs:SendMessage"]


def _stack(resources: Any) -> list[str]:
    return stack_target(resources, "roles")


def _assume(resources: Any, role: str, actions: list[str], session: str) -> dict[str, str]:
    """A role in moto's IAM allowed exactly `actions`, assumed as `session`: its credentials."""
    iam = resources.client("iam")
    trust = {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "sts:AssumeRole"}
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [trust]}))
    allow = {"Effect": "Allow", "Action": actions, "Resource": "*"}
    iam.put_role_policy(
        RoleName=role,
        PolicyName="operator",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [allow]}),
    )
    credentials = resources.client("sts").assume_role(
        RoleArn=f"arn:aws:iam::{ACCOUNT}:role/{role}", RoleSessionName=session
    )["Credentials"]
    return {
        "AWS_ACCESS_KEY_ID": credentials["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": credentials["SecretAccessKey"],
        "AWS_SESSION_TOKEN": credentials["SessionToken"],
    }


@contextmanager
def _as(monkeypatch: pytest.MonkeyPatch, credentials: dict[str, str]) -> Iterator[None]:
    """Run with these credentials while moto enforces IAM (process-wide, so only CLI calls happen inside)."""
    import boto3
    from moto.core.authorization import enable_iam_authentication

    with monkeypatch.context() as patch:
        for name, value in credentials.items():
            patch.setenv(name, value)
        patch.delenv("AWS_PROFILE", raising=False)
        patch.setattr(boto3, "DEFAULT_SESSION", None)  # its credentials were resolved from other variables
        with enable_iam_authentication():
            yield


@pytest.fixture
def parked(pipeline: Any, fhir_server: Any, clean_bridge: Any) -> str:
    """One review item: the booking's fixture patient matches two EHR Patients (ambiguous)."""
    import httpx

    for _ in range(2):
        httpx.post(
            f"{fhir_server.base_url}/Patient",
            json={
                "resourceType": "Patient",
                "name": [{"family": "Reyes", "given": ["Jordan"]}],
                "telecom": [{"system": "email", "value": "jordan.reyes@example.com"}],
                "birthDate": "1988-11-04",
            },
            headers={"Content-Type": "application/fhir+json"},
            trust_env=False,
        ).raise_for_status()
    pipeline.send(fixture_document("booking_created.json"))
    pipeline.drain()
    [item] = pipeline.review_items()
    return str(item["pk"]["S"])


def test_given_the_read_only_role_then_on_call_lists_and_shows_but_a_discard_names_the_admin_role(
    pipeline: Any, clean_bridge: Any, parked: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    target = _stack(clean_bridge)
    on_call = _assume(clean_bridge, f"OperatorReadOnly-{uuid.uuid4().hex[:6]}", READ_ONLY_ACTIONS, "oncall@clinic")
    capsys.readouterr()
    with _as(monkeypatch, on_call):
        assert main(["review", "list", "--json", *target]) == 0
        [listed] = json.loads(capsys.readouterr().out)
        assert listed["pk"] == parked and listed["reason"] == "ambiguous_patient"
        assert main(["review", "show", parked, "--json", *target]) == 0
        assert json.loads(capsys.readouterr().out)["status"] == "open"
        assert main(["dlq", "redrive", "--dry-run", *target]) == 0
        capsys.readouterr()

        code = main(["review", "discard", parked, "--reason", "test booking by staff", *target])
        err = capsys.readouterr().err
        assert code == 1
        assert err == (
            "calehr: access denied by AWS (UpdateItem: AccessDenied): `review discard` needs the OperatorAdmin role "
            "(stack output OperatorAdminRoleArn)\n"
        )
        assert main(["review", "show", parked, "--with-body", *target]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "`review show` needs the OperatorAdmin role" in err
        assert "jordan" not in err.lower() and "Traceback" not in err
    [item] = pipeline.review_items()
    assert item["status"]["S"] == "open"  # nothing changed


def test_given_the_admin_role_then_actions_are_recorded_under_its_sts_identity_with_the_person_hashed(
    pipeline: Any, clean_bridge: Any, parked: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    target = _stack(clean_bridge)
    role = f"OperatorAdmin-{uuid.uuid4().hex[:6]}"
    admin = _assume(clean_bridge, role, ADMIN_ACTIONS, "alice@clinic.example")
    with _as(monkeypatch, admin):
        assert main(["review", "discard", parked, "--reason", "test booking by staff", *target]) == 0
    capsys.readouterr()
    records = [
        item
        for item in clean_bridge.client("dynamodb").scan(TableName=clean_bridge.audit_table)["Items"]
        if item.get("subject", {}).get("S") == f"review#{parked}"
    ]
    [record] = records
    assert record["pk"]["S"].startswith("operator#lineage#")  # the booking's operator partition
    session = hashlib.sha256(b"alice@clinic.example").hexdigest()[:16]
    assert record["outcome"]["S"] == "review_discarded"
    assert record["actor_ref"]["S"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/sha256:{session}"
    assert "alice" not in json.dumps(records)
    [item] = pipeline.review_items()
    assert item["closed_by"]["S"] == record["actor_ref"]["S"]
