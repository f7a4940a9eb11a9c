"""Operator identity and roles in the CLI: who an audit record names, which role a command needs, and
the one line an AccessDenied becomes."""

from __future__ import annotations

import hashlib

import pytest
from botocore.exceptions import ClientError

from cli.identity import audit_identity
from cli.roles import ADMIN, READ_ONLY, access_denied_line, required_role
from tests.unit.cli.test_cli import RUNBOOK_COMMANDS


def _sha16(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]


@pytest.mark.parametrize(
    ("arn", "recorded"),
    [
        (
            "arn:aws:sts::111122223333:assumed-role/CalEhrBridge-prod-OperatorAdmin/alice@clinic.example",
            f"arn:aws:sts::111122223333:assumed-role/CalEhrBridge-prod-OperatorAdmin/{_sha16('alice@clinic.example')}",
        ),
        (
            "arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_Ops_0a1b/bob",
            f"arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_Ops_0a1b/{_sha16('bob')}",
        ),
        ("arn:aws:iam::111122223333:user/ops/carol", f"arn:aws:iam::111122223333:user/{_sha16('ops/carol')}"),
        ("arn:aws:sts::123456789012:user/moto", f"arn:aws:sts::123456789012:user/{_sha16('moto')}"),
        (
            "arn:aws:sts::111122223333:federated-user/dave",
            f"arn:aws:sts::111122223333:federated-user/{_sha16('dave')}",
        ),
        ("arn:aws:iam::111122223333:root", "arn:aws:iam::111122223333:root"),
        ("not an arn", _sha16("not an arn")),
    ],
)
def test_given_a_caller_arn_then_the_audit_keeps_the_role_and_hashes_the_person(arn: str, recorded: str) -> None:
    assert audit_identity(arn) == recorded


@pytest.mark.parametrize(
    ("args", "role"),
    [
        (["review", "list", "--stack", "S"], READ_ONLY),
        (["review", "show", "ID", "--json"], READ_ONLY),
        (["review", "show", "ID", "--with-body"], ADMIN),
        (["review", "retry", "ID"], ADMIN),
        (["review", "discard", "ID", "--reason", "test booking"], ADMIN),
        (["dlq", "redrive", "--dry-run"], READ_ONLY),
        (["dlq", "redrive", "--rate", "5"], ADMIN),
        (["sync", "status"], READ_ONLY),
        (["sync", "pause"], ADMIN),
        (["sync", "resume"], ADMIN),
        (["audit", "UID"], READ_ONLY),
        (["audit", "--form", "f-1"], READ_ONLY),
        (["reconcile", "--since", "2h", "--dry-run"], ADMIN),  # it reads the Cal.com API key
        (["doctor", "--stack", "S"], ADMIN),  # it reads the EHR credentials
        (["config", "validate", "clinic.yaml"], None),
    ],
)
def test_given_a_command_line_then_the_role_it_needs_is_known(args: list[str], role: str | None) -> None:
    assert required_role(args) == role


def test_given_every_runbook_command_against_aws_then_a_role_is_named_for_it() -> None:
    local_only = {"dev", "serve", "send", "appointments", "jwks", "config validate", "config schema", "hl7 render"}
    for path in RUNBOOK_COMMANDS - local_only:
        assert required_role(path.split()) in (READ_ONLY, ADMIN), path


def _denied(code: str = "AccessDeniedException", operation: str = "UpdateItem") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "User: arn:… is not authorized"}}, operation)


def test_given_access_denied_then_one_line_names_the_operation_and_the_role() -> None:
    line = access_denied_line(_denied(), ["review", "discard", "ID", "--reason", "test booking"])
    assert line == (
        "access denied by AWS (UpdateItem: AccessDeniedException): `review discard` needs the OperatorAdmin role "
        "(stack output OperatorAdminRoleArn)"
    )
    assert "\n" not in line


def test_given_a_store_error_caused_by_access_denied_then_the_role_is_still_named() -> None:
    from shared.stores.review import ReviewStoreUnavailableError

    try:
        try:
            raise _denied("AccessDenied", "GetItem")
        except ClientError as exc:
            raise ReviewStoreUnavailableError("ClientError") from exc
    except ReviewStoreUnavailableError as wrapped:
        line = access_denied_line(wrapped, ["review", "show", "ID", "--with-body"])
    assert line is not None and "`review show` needs the OperatorAdmin role" in line


def test_given_another_failure_then_it_is_not_called_a_denial() -> None:
    assert access_denied_line(_denied("ResourceNotFoundException"), ["review", "list"]) is None
    assert access_denied_line(RuntimeError("boom"), ["review", "list"]) is None
    line = access_denied_line(_denied(), ["config", "schema"])
    assert line is not None and line.endswith("needs credentials allowed to do this")
